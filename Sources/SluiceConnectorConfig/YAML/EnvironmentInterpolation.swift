import Foundation

/// `${VAR}` and `${VAR:-default}` substitution in configuration values. `$$` stands for a literal `$`.
public enum EnvironmentInterpolation {
    /// Why a value could not be interpolated.
    public enum Problem: Error, Equatable, Sendable, CustomStringConvertible {
        /// `${NAME}` without a default, and `NAME` is not set.
        case missingVariable(String)
        /// A `${` without its closing brace, or an empty or malformed name.
        case malformed(String)

        public var description: String {
            switch self {
            case .missingVariable(let name):
                "environment variable '\(name)' is not set and has no default (write ${\(name):-default} to give one)"
            case .malformed(let text): "malformed interpolation '\(text)': write ${NAME} or ${NAME:-default}"
            }
        }
    }

    /// Substitutes every `${...}` in `text`.
    ///
    /// - Returns: the result, and whether any substitution happened (interpolated values may be secrets).
    public static func interpolate(
        _ text: String, environment: [String: String]
    ) -> Result<(value: String, substituted: Bool), Problem> {
        guard text.contains("$") else { return .success((text, false)) }
        var output = ""
        var substituted = false
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            guard character == "$" else {
                output.append(character)
                index = text.index(after: index)
                continue
            }
            let next = text.index(after: index)
            if next < text.endIndex, text[next] == "$" {
                output.append("$")
                index = text.index(after: next)
                continue
            }
            guard next < text.endIndex, text[next] == "{" else {
                output.append(character)
                index = next
                continue
            }
            guard let close = text[next...].firstIndex(of: "}") else {
                return .failure(.malformed(String(text[index...])))
            }
            let body = text[text.index(after: next)..<close]
            let name: Substring
            let fallback: Substring?
            if let separator = body.range(of: ":-") {
                name = body[..<separator.lowerBound]
                fallback = body[separator.upperBound...]
            } else {
                name = body
                fallback = nil
            }
            guard !name.isEmpty, name.allSatisfy({ $0 == "_" || $0.isLetter || $0.isNumber }),
                !(name.first?.isNumber ?? true)
            else {
                return .failure(.malformed(String(text[index...close])))
            }
            if let value = environment[String(name)], !(value.isEmpty && fallback != nil) {
                output += value
            } else if let fallback {
                output += fallback
            } else {
                return .failure(.missingVariable(String(name)))
            }
            substituted = true
            index = text.index(after: close)
        }
        return .success((output, substituted))
    }
}
