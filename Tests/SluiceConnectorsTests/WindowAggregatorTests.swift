@testable import SluiceConnectorConfig
import SluiceConnectors
import SluiceKafka
import Testing

/// Tumbling windows over event time: folding, closing by per-partition stream time and by idleness, late and
/// invalid records, acknowledgements, and an independent brute-force check on a long random stream.
@Suite struct WindowAggregatorTests {
    typealias Aggregator = WindowAggregator<Int>
    typealias Function = AggregateProcessorConfiguration.Function

    static let p0 = KafkaTopicPartition(topic: "clicks", partition: 0)
    static let p1 = KafkaTopicPartition(topic: "clicks", partition: 1)
    static let p2 = KafkaTopicPartition(topic: "clicks", partition: 2)
    static let start = ContinuousClock.now

    static func aggregator(
        _ function: Function = .count, field: String? = ".v", window: Duration = .milliseconds(1000),
        grace: Duration = .zero, idleClose: Duration = .seconds(30)
    ) -> Aggregator {
        let path: JSONPath? = field.flatMap { try? JSONPath.parse($0).get() }
        return Aggregator(
            AggregateProcessorConfiguration(
                key: .messageKey, function: function, field: path, window: window, grace: grace, idleClose: idleClose))
    }

    static func value(_ number: Double) -> JSONValue { .object(["v": .number(number)]) }

    /// Adds a record and returns the windows it closed; records an issue for late or invalid outcomes.
    @discardableResult
    static func fold(
        _ aggregator: inout Aggregator, _ key: String, _ timestamp: Int64, _ value: JSONValue? = nil,
        partition: KafkaTopicPartition = p0, offset: Int64 = 0, ack: Int = 0, now: ContinuousClock.Instant = start,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) -> [Aggregator.WindowResult] {
        let result = aggregator.add(
            key: key, timestamp: timestamp, value: value, partition: partition, offset: offset, ack: ack, now: now)
        guard case .folded(let closed) = result else {
            Issue.record("expected the record to be folded, got \(result)", sourceLocation: sourceLocation)
            return []
        }
        return closed
    }

    // MARK: Functions

    @Test func countsPerKeyAndWindow() {
        var aggregator = Self.aggregator(.count, field: nil)
        #expect(Self.fold(&aggregator, "alice", 100, offset: 10, ack: 0).isEmpty)
        #expect(Self.fold(&aggregator, "alice", 500, offset: 11, ack: 1).isEmpty)
        #expect(Self.fold(&aggregator, "bob", 999, offset: 12, ack: 2).isEmpty)
        #expect(aggregator.openWindowCount == 2)
        let closed = Self.fold(&aggregator, "alice", 1000, offset: 13, ack: 3)
        #expect(closed.map(\.key) == ["alice", "bob"])
        #expect(closed.map(\.windowStart) == [0, 0])
        #expect(closed.map(\.windowEnd) == [1000, 1000])
        #expect(closed.map(\.count) == [2, 1])
        #expect(closed.map(\.value) == [.number(2), .number(1)])
        #expect(closed.map(\.acks) == [[0, 1], [2]])
        #expect(closed.map(\.lastOffset) == [11, 12])
        #expect(closed.allSatisfy { $0.partition == Self.p0 })
        #expect(aggregator.openWindowCount == 1)
    }

    struct FunctionCase: Sendable, CustomTestStringConvertible {
        var function: Function
        var expected: JSONValue
        var testDescription: String { function.rawValue }
    }

    static let functions: [FunctionCase] = [
        .init(function: .count, expected: .number(4)),
        .init(function: .sum, expected: .number(13.5)),
        .init(function: .min, expected: .number(-2)),
        .init(function: .max, expected: .number(7.5)),
        .init(function: .last, expected: .number(3)),
    ]

    @Test(arguments: functions)
    func foldsWithEachFunction(_ functionCase: FunctionCase) {
        var aggregator = Self.aggregator(functionCase.function)
        for (index, number) in [5, -2, 7.5, 3].enumerated() {
            Self.fold(&aggregator, "k", Int64(index * 100), Self.value(number), offset: Int64(index), ack: index)
        }
        let closed = Self.fold(&aggregator, "other", 5_000, Self.value(0))
        #expect(closed.count == 1)
        #expect(closed.first?.value == functionCase.expected)
        #expect(closed.first?.count == 4)
        #expect(closed.first?.acks == [0, 1, 2, 3])
    }

    @Test func lastKeepsAnyJSONValueInArrivalOrder() {
        var aggregator = Self.aggregator(.last)
        Self.fold(&aggregator, "k", 900, .object(["v": .string("late in time, first to arrive")]))
        Self.fold(&aggregator, "k", 100, .object(["v": .object(["nested": .bool(true)])]))
        let closed = Self.fold(&aggregator, "k", 2_000, .object(["v": .null]))
        #expect(closed.first?.value == .object(["nested": .bool(true)]))
    }

    @Test func numericStringsAreFolded() {
        var aggregator = Self.aggregator(.sum)
        Self.fold(&aggregator, "k", 0, .object(["v": .string("4")]))
        Self.fold(&aggregator, "k", 1, .object(["v": .string("0.5")]))
        #expect(Self.fold(&aggregator, "k", 1_000, Self.value(0)).first?.value == .number(4.5))
    }

    @Test func resultJSON() throws {
        var aggregator = Self.aggregator(.count, field: nil, window: .seconds(60))
        for offset in 0..<3 { Self.fold(&aggregator, "alice", 1_700_000_040_000 + Int64(offset) * 19_000) }
        let result = try #require(Self.fold(&aggregator, "bob", 1_700_000_100_000).first)
        #expect(
            String(decoding: result.json(function: .count).serialized(), as: UTF8.self)
                == #"{"count":3,"function":"count","key":"alice","value":3,"window_end":1700000100000,"window_start":1700000040000}"#)
    }

    @Test func windowsAlignToMultiplesOfTheirSize() {
        var aggregator = Self.aggregator(window: .seconds(60))
        let timestamp: Int64 = 1_700_000_012_345
        Self.fold(&aggregator, "k", timestamp)
        let closed = Self.fold(&aggregator, "k", timestamp + 120_000)
        let expectedStart = timestamp / 60_000 * 60_000
        #expect(closed.map(\.windowStart) == [expectedStart])
        #expect(closed.map(\.windowEnd) == [expectedStart + 60_000])
    }

    // MARK: Closing and lateness

    @Test func aWindowClosesWhenStreamTimeReachesItsEndPlusGrace() {
        var aggregator = Self.aggregator(grace: .milliseconds(200))
        Self.fold(&aggregator, "a", 0, ack: 0)
        #expect(Self.fold(&aggregator, "b", 1_199, ack: 1).isEmpty, "end + grace - 1: still open")
        let closed = Self.fold(&aggregator, "b", 1_200, ack: 2)
        #expect(closed.map(\.key) == ["a"])
        #expect(closed.map(\.windowStart) == [0])
        #expect(aggregator.openWindowCount == 1)
    }

    @Test func lateRecordsAreReportedNotFolded() {
        var aggregator = Self.aggregator(grace: .milliseconds(200))
        Self.fold(&aggregator, "a", 0, ack: 0)
        #expect(Self.fold(&aggregator, "a", 1_200, ack: 1).map(\.acks) == [[0]])
        let result = aggregator.add(key: "a", timestamp: 999, value: nil, partition: Self.p0, offset: 5, ack: 2, now: Self.start)
        guard case .late(let windowEnd, let streamTime) = result else {
            Issue.record("expected late, got \(result)")
            return
        }
        #expect(windowEnd == 1_000)
        #expect(streamTime == 1_200)
        #expect(aggregator.openWindowCount == 1, "the late record opened no window")
        let rest = aggregator.closeIdle(now: Self.start + .seconds(3600))
        #expect(rest.flatMap(\.acks) == [1], "the late record's ack is never returned with a window")
    }

    @Test func aLateRecordIsReportedEvenWhenItLacksTheField() {
        var aggregator = Self.aggregator(.sum)
        Self.fold(&aggregator, "a", 5_000, Self.value(1))
        guard case .late = aggregator.add(key: "a", timestamp: 10, value: nil, partition: Self.p0, offset: 0, ack: 0, now: Self.start)
        else {
            Issue.record("expected late")
            return
        }
    }

    @Test func recordsWithinGraceAreFoldedIntoTheirWindow() {
        var aggregator = Self.aggregator(.sum, grace: .milliseconds(200))
        Self.fold(&aggregator, "a", 500, Self.value(1), ack: 0)
        Self.fold(&aggregator, "a", 1_100, Self.value(10), ack: 1)
        Self.fold(&aggregator, "a", 900, Self.value(100), ack: 2)
        Self.fold(&aggregator, "a", 1_199, Self.value(1000), ack: 3)
        let closed = Self.fold(&aggregator, "a", 1_200, Self.value(10000), ack: 4)
        #expect(closed.count == 1)
        #expect(closed.first?.windowStart == 0)
        #expect(closed.first?.value == .number(101))
        #expect(closed.first?.acks == [0, 2])
    }

    @Test func invalidRecords() {
        var aggregator = Self.aggregator(.sum)
        let cases: [(JSONValue?, String)] = [
            (nil, "the record has no .v to sum"),
            (.object(["w": .number(1)]), "the record has no .v to sum"),
            (.array([.number(1)]), "the record has no .v to sum"),
            (.object(["v": .string("abc")]), ".v is not a number, so it cannot be folded by sum"),
            (.object(["v": .bool(true)]), ".v is not a number"),
            (.object(["v": .null]), ".v is not a number"),
            (.object(["v": .object([:])]), ".v is not a number"),
        ]
        for (value, message) in cases {
            let result = aggregator.add(key: "k", timestamp: 50_000, value: value, partition: Self.p0, offset: 0, ack: 0, now: Self.start)
            guard case .invalid(let reason) = result else {
                Issue.record("\(String(describing: value)): expected invalid, got \(result)")
                continue
            }
            #expect(reason.contains(message), "\(reason)")
        }
        #expect(aggregator.openWindowCount == 0)
        // Invalid records do not move stream time: an early record is still on time.
        Self.fold(&aggregator, "k", 10, Self.value(1))
        #expect(aggregator.openWindowCount == 1)
    }

    @Test func countNeedsNoField() {
        var aggregator = Self.aggregator(.count, field: nil)
        Self.fold(&aggregator, "k", 0, nil)
        Self.fold(&aggregator, "k", 1, .string("not an object"))
        #expect(Self.fold(&aggregator, "k", 1_000).first?.count == 2)
    }

    @Test func eachPartitionHasItsOwnStreamTime() {
        var aggregator = Self.aggregator(grace: .milliseconds(100))
        Self.fold(&aggregator, "a", 0, partition: Self.p0, ack: 0)
        #expect(Self.fold(&aggregator, "a", 50_000, partition: Self.p1, ack: 1).isEmpty, "p1's time does not close p0's windows")
        #expect(aggregator.openWindowCount == 2)
        Self.fold(&aggregator, "a", 100, partition: Self.p0, ack: 2)
        let closed = Self.fold(&aggregator, "b", 1_100, partition: Self.p0, ack: 3)
        #expect(closed.map(\.partition) == [Self.p0])
        #expect(closed.map(\.acks) == [[0, 2]])
        // The same key in two partitions makes two windows.
        let rest = aggregator.closeIdle(now: Self.start + .seconds(3600))
        #expect(Set(rest.map(\.partition)) == [Self.p0, Self.p1])
        #expect(rest.map(\.key).sorted() == ["a", "b"])
    }

    @Test func resultsAreOrderedByWindowStartThenKey() {
        var aggregator = Self.aggregator(grace: .milliseconds(900))
        let records: [(String, Int64)] = [("m", 2_500), ("z", 2_100), ("a", 1_700), ("z", 1_600), ("b", 2_050), ("a", 2_600)]
        for (index, record) in records.enumerated() {
            #expect(Self.fold(&aggregator, record.0, record.1, ack: index).isEmpty)
        }
        let closed = Self.fold(&aggregator, "late-key", 10_000, ack: 99)
        #expect(closed.map(\.windowStart) == [1_000, 1_000, 2_000, 2_000, 2_000, 2_000])
        #expect(closed.map(\.key) == ["a", "z", "a", "b", "m", "z"])
        #expect(closed.map(\.acks) == [[2], [3], [5], [4], [0], [1]])
    }

    // MARK: Idleness and revocation

    @Test func idlePartitionsCloseAllTheirWindows() {
        var aggregator = Self.aggregator(idleClose: .seconds(30))
        let base = Self.start
        #expect(aggregator.nextIdleDeadline == nil)
        Self.fold(&aggregator, "a", 0, partition: Self.p0, ack: 0, now: base)
        Self.fold(&aggregator, "b", 500, partition: Self.p0, ack: 1, now: base + .seconds(5))
        Self.fold(&aggregator, "a", 0, partition: Self.p1, ack: 2, now: base + .seconds(10))
        #expect(aggregator.nextIdleDeadline == base + .seconds(35))
        #expect(aggregator.closeIdle(now: base + .seconds(34)).isEmpty)
        let p0 = aggregator.closeIdle(now: base + .seconds(35))
        #expect(p0.map(\.partition) == [Self.p0, Self.p0])
        #expect(p0.map(\.windowStart) == [0, 0])
        #expect(p0.map(\.key) == ["a", "b"])
        #expect(p0.map(\.acks) == [[0], [1]])
        #expect(aggregator.openWindowCount == 1)
        #expect(aggregator.nextIdleDeadline == base + .seconds(40))
        #expect(aggregator.closeIdle(now: base + .seconds(39)).isEmpty)
        #expect(aggregator.closeIdle(now: base + .seconds(40)).map(\.acks) == [[2]])
        #expect(aggregator.openWindowCount == 0)
        #expect(aggregator.nextIdleDeadline == nil)
        #expect(aggregator.closeIdle(now: base + .seconds(1000)).isEmpty)
    }

    @Test func activityPostponesTheIdleClose() {
        var aggregator = Self.aggregator(idleClose: .seconds(30))
        let base = Self.start
        Self.fold(&aggregator, "a", 0, now: base)
        Self.fold(&aggregator, "a", 10, now: base + .seconds(20))
        #expect(aggregator.closeIdle(now: base + .seconds(30)).isEmpty)
        #expect(aggregator.closeIdle(now: base + .seconds(50)).map(\.count) == [2])
    }

    @Test func discardForgetsAPartitionsWindowsAndStreamTime() {
        var aggregator = Self.aggregator()
        Self.fold(&aggregator, "a", 5_000, partition: Self.p0, ack: 0)
        Self.fold(&aggregator, "b", 5_000, partition: Self.p0, ack: 1)
        Self.fold(&aggregator, "a", 5_000, partition: Self.p1, ack: 2)
        Self.fold(&aggregator, "a", 5_000, partition: Self.p2, ack: 3)
        aggregator.discard([Self.p0, Self.p2])
        #expect(aggregator.openWindowCount == 1)
        // p0's stream time is forgotten: a record far behind it is on time again.
        Self.fold(&aggregator, "a", 10, partition: Self.p0, ack: 4)
        let rest = aggregator.closeIdle(now: Self.start + .seconds(3600))
        #expect(rest.flatMap(\.acks).sorted() == [2, 4], "discarded acks are never returned")
        aggregator.discard([])
        #expect(aggregator.openWindowCount == 0)
    }

    // MARK: Against a brute-force computation

    /// A 64-bit linear congruential generator (Knuth's MMIX constants): the same stream on every run.
    struct LCG {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
    }

    struct Record {
        var index: Int
        var partition: KafkaTopicPartition
        var key: String
        var timestamp: Int64
        var number: Int
        var offset: Int64
    }

    struct WindowID: Hashable, CustomStringConvertible {
        var partition: Int32
        var key: String
        var start: Int64
        var description: String { "p\(partition)/\(key)/\(start)" }
    }

    struct Expected: Equatable {
        var count: Int
        var value: JSONValue
        var acks: [Int]
        var lastOffset: Int64
        /// The index of the record whose arrival closes the window, or `nil`: closed at the end by idleness.
        var closedBy: Int?
    }

    static func randomStream(seed: UInt64, count: Int, graceMilliseconds: Int) -> [Record] {
        var random = LCG(state: seed)
        let partitions = [p0, p1, p2]
        var base: Int64 = 1_700_000_000_000
        var offsets: [Int64] = [0, 0, 0]
        var records: [Record] = []
        for index in 0..<count {
            base += Int64(random.next(40))
            let partition = random.next(3)
            // Out of order by less than the grace period, so no record is ever late.
            let timestamp = base - Int64(random.next(graceMilliseconds))
            records.append(
                Record(
                    index: index, partition: partitions[partition], key: "user-\(random.next(7))", timestamp: timestamp,
                    number: random.next(201) - 100, offset: offsets[partition]))
            offsets[partition] += 1
        }
        return records
    }

    static func bruteForce(
        _ records: [Record], function: Function, windowMilliseconds: Int64, graceMilliseconds: Int64
    ) -> [WindowID: Expected] {
        var members: [WindowID: [Record]] = [:]
        var streamTime: [Int32: Int64] = [:]
        var streamTimeAfter: [Int64] = []
        for record in records {
            var start = record.timestamp - record.timestamp % windowMilliseconds
            if record.timestamp % windowMilliseconds < 0 { start -= windowMilliseconds }
            members[WindowID(partition: record.partition.partition, key: record.key, start: start), default: []].append(record)
            streamTime[record.partition.partition] = max(streamTime[record.partition.partition] ?? .min, record.timestamp)
            streamTimeAfter.append(streamTime[record.partition.partition]!)
        }
        var expected: [WindowID: Expected] = [:]
        for (id, folded) in members {
            let numbers = folded.map { Double($0.number) }
            let value: JSONValue
            switch function {
            case .count: value = .number(Double(folded.count))
            case .sum: value = .number(numbers.reduce(0, +))
            case .min: value = .number(numbers.min()!)
            case .max: value = .number(numbers.max()!)
            case .last: value = .number(numbers.last!)
            }
            let closedBy = records.first { record in
                record.partition.partition == id.partition
                    && streamTimeAfter[record.index] >= id.start + windowMilliseconds + graceMilliseconds
            }?.index
            expected[id] = Expected(
                count: folded.count, value: value, acks: folded.map(\.index), lastOffset: folded.map(\.offset).max()!,
                closedBy: closedBy)
        }
        return expected
    }

    @Test(arguments: Function.allCases)
    func matchesABruteForceComputationOnARandomStream(_ function: Function) {
        let window: Int64 = 1_000
        let grace: Int64 = 300
        let records = Self.randomStream(seed: 0x5EED_1234, count: 5_000, graceMilliseconds: Int(grace))
        let expected = Self.bruteForce(records, function: function, windowMilliseconds: window, graceMilliseconds: grace)

        var aggregator = Self.aggregator(function, window: .milliseconds(window), grace: .milliseconds(grace))
        var actual: [WindowID: Expected] = [:]
        func collect(_ results: [Aggregator.WindowResult], closedBy: Int?) {
            if let closedBy {
                #expect(results.allSatisfy { $0.partition == records[closedBy].partition })
                #expect(
                    zip(results, results.dropFirst()).allSatisfy { ($0.windowStart, $0.key) < ($1.windowStart, $1.key) },
                    "ordered by window start, then key")
            }
            for result in results {
                let id = WindowID(partition: result.partition.partition, key: result.key, start: result.windowStart)
                #expect(actual[id] == nil, "\(id) emitted twice")
                #expect(result.windowEnd == result.windowStart + window)
                actual[id] = Expected(
                    count: result.count, value: result.value, acks: result.acks, lastOffset: result.lastOffset, closedBy: closedBy)
            }
        }
        var lateOrInvalid = 0
        for record in records {
            let result = aggregator.add(
                key: record.key, timestamp: record.timestamp, value: Self.value(Double(record.number)),
                partition: record.partition, offset: record.offset, ack: record.index, now: Self.start)
            switch result {
            case .folded(let closed): collect(closed, closedBy: record.index)
            case .late, .invalid: lateOrInvalid += 1
            }
        }
        #expect(lateOrInvalid == 0)
        collect(aggregator.closeIdle(now: Self.start + .seconds(30)), closedBy: nil)
        #expect(aggregator.openWindowCount == 0)

        #expect(actual.count == expected.count)
        #expect(expected.count > 100, "the stream spans many windows")
        #expect(expected.values.contains { $0.closedBy == nil } && expected.values.contains { $0.closedBy != nil })
        var mismatches: [String] = []
        for (id, want) in expected where actual[id] != want {
            mismatches.append("\(id): expected \(want), got \(String(describing: actual[id]))")
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(5))")
        #expect(actual.values.flatMap(\.acks).sorted() == Array(0..<records.count), "every record acknowledged exactly once")
    }
}
