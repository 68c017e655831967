public import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
public import SluiceConnectorConfig
import SluiceKafka

/// Calls the application over HTTP (the `http` sink and processor) and classifies its answer.
///
/// The answer's contract (see docs/connectors.md): 2xx acknowledges, unless the body is `{"status":"drop"}`; 422
/// or a drop body sends the record to the dead-letter topic; 408, 429 and 5xx, connection errors and timeouts are
/// retried (honouring `Retry-After`); any other 4xx is a permanent failure, handled by the connector's error policy.
public struct ApplicationEndpoint: Sendable {
    public let configuration: HTTPEndpointConfiguration
    let client: HTTPClient
    /// The largest response body read (for processors, the new value).
    static let maxResponseBytes = 16 * 1024 * 1024

    public init(_ configuration: HTTPEndpointConfiguration, client: HTTPClient) {
        self.configuration = configuration
        self.client = client
    }

    /// POSTs `records` (one request: a single envelope, a batch, or a raw value) and returns the response body.
    public func post(_ records: [ConnectorRecord], connector: String) async -> Result<[UInt8], RecordFailure> {
        var request = HTTPClientRequest(url: configuration.url)
        request.method = .POST
        request.headers.add(name: "User-Agent", value: "sluice/\(SluiceVersion.current)")
        request.headers.add(name: "Sluice-Connector", value: connector)
        if let token = configuration.appToken { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for header in configuration.headers { request.headers.add(name: header.name, value: header.value) }
        let body: [UInt8]
        switch configuration.format {
        case .json where records.count == 1 && configuration.batchSize == 1:
            body = RecordEncoding.envelope(records[0]).serialized()
            request.headers.add(name: "Content-Type", value: "application/json")
        case .json:
            body = JSONValue.object(["messages": .array(records.map(RecordEncoding.envelope))]).serialized()
            request.headers.add(name: "Content-Type", value: "application/json")
        case .raw:
            let record = records[0]
            body = record.value ?? []
            request.headers.add(name: "Content-Type", value: "application/octet-stream")
            request.headers.add(name: "Sluice-Topic", value: record.topic)
            request.headers.add(name: "Sluice-Partition", value: String(record.partition))
            request.headers.add(name: "Sluice-Offset", value: String(record.offset))
            if let key = record.key { request.headers.add(name: "Sluice-Key-Base64", value: Data(key).base64EncodedString()) }
            if let timestamp = record.timestampMilliseconds { request.headers.add(name: "Sluice-Timestamp", value: String(timestamp)) }
            for header in record.headers {
                request.headers.add(name: "Sluice-Header-\(header.name)", value: Data(header.value ?? []).base64EncodedString())
            }
        }
        request.body = .bytes(body)
        let timeout = TimeAmount(configuration.timeout)
        do {
            let response = try await client.execute(request, timeout: timeout)
            let responseBody = try await response.body.collect(upTo: Self.maxResponseBytes)
            let bytes = Array(responseBody.readableBytesView)
            return Self.classify(status: Int(response.status.code), body: bytes, retryAfter: response.headers.first(name: "Retry-After"))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return .failure(RecordFailure(.retryable, errorClass: "HTTPTimeout", message: "\(configuration.url) did not answer within \(configuration.timeout)"))
        } catch {
            return .failure(RecordFailure(.retryable, errorClass: "HTTPConnection", message: "cannot reach \(configuration.url): \(error)"))
        }
    }

    /// Maps an HTTP answer to success, drop, retryable or permanent failure.
    public static func classify(status: Int, body: [UInt8], retryAfter: String?) -> Result<[UInt8], RecordFailure> {
        switch status {
        case 200..<300:
            if !body.isEmpty, body.count < 4096, body.first == UInt8(ascii: "{"),
                case .object(let members)? = JSONValue.parse(body), members["status"] == .string("drop")
            {
                let reason = members["reason"].map(\.keyText) ?? "the application answered {\"status\":\"drop\"}"
                return .failure(RecordFailure(.drop, errorClass: "ApplicationDrop", message: reason))
            }
            return .success(body)
        case 422:
            return .failure(RecordFailure(.drop, errorClass: "HTTPStatus422", message: "the application rejected the record: \(snippet(body))"))
        case 408, 429, 500..<600:
            let wait = retryAfter.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }.map { Duration.seconds($0) }
            return .failure(RecordFailure(.retryable, errorClass: "HTTPStatus\(status)", message: "the application answered \(status): \(snippet(body))", retryAfter: wait))
        default:
            return .failure(RecordFailure(.permanent, errorClass: "HTTPStatus\(status)", message: "the application answered \(status): \(snippet(body))"))
        }
    }

    private static func snippet(_ body: [UInt8]) -> String {
        let text = String(decoding: body.prefix(200), as: UTF8.self)
        return text.isEmpty ? "(empty body)" : text
    }
}

/// How records are shown to the application and to line-oriented sinks.
public enum RecordEncoding {
    /// `{"topic","partition","offset","timestamp","key","headers","value","value_encoding"}`: the value embedded as
    /// JSON when it is JSON, else as a UTF-8 string, else base64.
    public static func envelope(_ record: ConnectorRecord) -> JSONValue {
        var members: [String: JSONValue] = [
            "topic": .string(record.topic), "partition": .number(Double(record.partition)),
            "offset": .number(Double(record.offset)),
        ]
        members["timestamp"] = record.timestampMilliseconds.map { .number(Double($0)) } ?? .null
        members["key"] = record.key.map { String(validating: $0, as: UTF8.self).map(JSONValue.string) ?? .string(Data($0).base64EncodedString()) } ?? .null
        var headers: [String: JSONValue] = [:]
        for header in record.headers { headers[header.name] = header.stringValue.map(JSONValue.string) ?? .null }
        members["headers"] = .object(headers)
        if let value = record.value {
            if let json = JSONValue.parse(value) {
                members["value"] = json
                members["value_encoding"] = .string("json")
            } else if let text = String(validating: value, as: UTF8.self) {
                members["value"] = .string(text)
                members["value_encoding"] = .string("utf8")
            } else {
                members["value"] = .string(Data(value).base64EncodedString())
                members["value_encoding"] = .string("base64")
            }
        } else {
            members["value"] = .null
        }
        return .object(members)
    }
}

/// Sluice's version, as `sluice version` prints it.
public enum SluiceVersion {
    public static let current = "0.2.0"
}
