import Synchronization

/// Counters, gauges and histograms with labels, rendered in Prometheus' text exposition format. Small on purpose:
/// Sluice's own metrics only, no global registry.
public final class MetricsRegistry: Sendable {
    /// A metric's identity: name plus sorted label pairs.
    struct SeriesKey: Hashable, Comparable {
        var name: String
        var labels: [Label]

        /// Labels are kept sorted by name, so the order a caller lists them in does not make a second series.
        init(name: String, labels: [Label]) {
            self.name = name
            self.labels = labels.sorted { $0.name < $1.name }
        }

        static func < (a: SeriesKey, b: SeriesKey) -> Bool {
            (a.name, a.labels.map(\.rendered).joined(separator: ",")) < (b.name, b.labels.map(\.rendered).joined(separator: ","))
        }
    }

    struct Label: Hashable {
        var name: String
        var value: String
        var rendered: String { "\(name)=\"\(MetricsRegistry.escape(value))\"" }
    }

    enum Kind: String { case counter, gauge, histogram }

    private struct State {
        var help: [String: (Kind, String)] = [:]
        var counters: [SeriesKey: Double] = [:]
        var gauges: [SeriesKey: Double] = [:]
        var histograms: [SeriesKey: Histogram] = [:]
        var collectors: [@Sendable (MetricsRegistry) -> Void] = []
    }

    struct Histogram {
        var bounds: [Double]
        var counts: [Int]
        var sum: Double = 0
        var count: Int = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Declares a metric's type and help text (shown once per name).
    public func describe(_ name: String, kind: String, help: String) {
        state.withLock { $0.help[name] = (Kind(rawValue: kind) ?? .gauge, help) }
    }

    public func increment(_ name: String, by amount: Double = 1, labels: [(String, String)] = []) {
        let key = SeriesKey(name: name, labels: labels.map { Label(name: $0.0, value: $0.1) })
        state.withLock { $0.counters[key, default: 0] += amount }
    }

    public func setGauge(_ name: String, _ value: Double, labels: [(String, String)] = []) {
        let key = SeriesKey(name: name, labels: labels.map { Label(name: $0.0, value: $0.1) })
        state.withLock { $0.gauges[key] = value }
    }

    /// Removes every gauge series of `name` whose labels include `label` (for example a revoked partition's lag).
    public func removeGauges(_ name: String, where label: (String, String)) {
        state.withLock { state in
            state.gauges = state.gauges.filter { key, _ in
                !(key.name == name && key.labels.contains(Label(name: label.0, value: label.1)))
            }
        }
    }

    /// Records a histogram observation (seconds for latencies).
    public func observe(_ name: String, _ value: Double, labels: [(String, String)] = [], buckets: [Double] = MetricsRegistry.latencyBuckets) {
        let key = SeriesKey(name: name, labels: labels.map { Label(name: $0.0, value: $0.1) })
        state.withLock { state in
            var histogram = state.histograms[key] ?? Histogram(bounds: buckets, counts: Array(repeating: 0, count: buckets.count))
            for (index, bound) in histogram.bounds.enumerated() where value <= bound { histogram.counts[index] += 1 }
            histogram.sum += value
            histogram.count += 1
            state.histograms[key] = histogram
        }
    }

    /// Adds a closure run before each rendering, to refresh gauges computed from live state.
    public func addCollector(_ collector: @escaping @Sendable (MetricsRegistry) -> Void) {
        state.withLock { $0.collectors.append(collector) }
    }

    /// The value of a counter (tests and status output).
    public func counter(_ name: String, labels: [(String, String)] = []) -> Double {
        let key = SeriesKey(name: name, labels: labels.map { Label(name: $0.0, value: $0.1) })
        return state.withLock { $0.counters[key] ?? 0 }
    }

    public static let latencyBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// Prometheus text format (version 0.0.4).
    public func render() -> String {
        let collectors = state.withLock { $0.collectors }
        for collector in collectors { collector(self) }
        return state.withLock { state in
            var lines: [String] = []
            var described: Set<String> = []
            func header(_ name: String, _ fallback: Kind) {
                guard described.insert(name).inserted else { return }
                let (kind, help) = state.help[name] ?? (fallback, name)
                lines.append("# HELP \(name) \(help.replacing("\\", with: "\\\\").replacing("\n", with: "\\n"))")
                lines.append("# TYPE \(name) \(kind.rawValue)")
            }
            func series(_ key: SeriesKey, suffix: String = "", extra: [Label] = []) -> String {
                let labels = key.labels + extra
                return key.name + suffix + (labels.isEmpty ? "" : "{" + labels.map(\.rendered).joined(separator: ",") + "}")
            }
            for (key, value) in state.counters.sorted(by: { $0.key < $1.key }) {
                header(key.name, .counter)
                lines.append("\(series(key)) \(format(value))")
            }
            for (key, value) in state.gauges.sorted(by: { $0.key < $1.key }) {
                header(key.name, .gauge)
                lines.append("\(series(key)) \(format(value))")
            }
            for (key, histogram) in state.histograms.sorted(by: { $0.key < $1.key }) {
                header(key.name, .histogram)
                for (index, bound) in histogram.bounds.enumerated() {
                    lines.append("\(series(key, suffix: "_bucket", extra: [Label(name: "le", value: format(bound))])) \(histogram.counts[index])")
                }
                lines.append("\(series(key, suffix: "_bucket", extra: [Label(name: "le", value: "+Inf")])) \(histogram.count)")
                lines.append("\(series(key, suffix: "_sum")) \(format(histogram.sum))")
                lines.append("\(series(key, suffix: "_count")) \(histogram.count)")
            }
            return lines.joined(separator: "\n") + "\n"
        }
    }

    private func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    static func escape(_ value: String) -> String {
        value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
    }
}
