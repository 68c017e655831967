import Foundation
public import Hummingbird
import NIOCore
import SluiceConnectorConfig
import SluiceConnectors
import SluiceKafka

/// The sidecar's HTTP interface: probes, metrics, connector status and control, and the publish API.
public enum SidecarRoutes {
    /// Builds the router for `sidecar`.
    public static func router(for sidecar: Sidecar) -> Router<BasicRequestContext> {
        let router = Router()
        if let token = sidecar.configuration.server.apiToken {
            router.add(middleware: BearerTokenMiddleware(token: token))
        }
        router.get("healthz") { _, _ in json(.ok, .object(["status": .string("alive")])) }
        router.get("readyz") { _, _ in
            let statuses = sidecar.connectors.map(\.status)
            let ready = !sidecar.isDraining && statuses.allSatisfy(\.isReady)
            let body = JSONValue.object([
                "ready": .bool(ready), "draining": .bool(sidecar.isDraining),
                "connectors": .object(Dictionary(uniqueKeysWithValues: statuses.map { ($0.name, JSONValue.string($0.isReady ? "ready" : $0.state.rawValue)) })),
            ])
            return json(ready ? .ok : .serviceUnavailable, body)
        }
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: sidecar.metrics.render())))
        }
        router.get("v1/connectors") { _, _ in
            json(.ok, .object(["connectors": .array(sidecar.connectors.map { statusJSON($0.status) })]))
        }
        router.get("v1/connectors/:name") { _, context in
            guard let connector = sidecar.connector(named: context.parameters.get("name") ?? "") else {
                return error(.notFound, "no connector named '\(context.parameters.get("name") ?? "")'")
            }
            return json(.ok, statusJSON(connector.status))
        }
        router.post("v1/connectors/:name/pause") { _, context in
            guard let connector = sidecar.connector(named: context.parameters.get("name") ?? "") else {
                return error(.notFound, "no connector named '\(context.parameters.get("name") ?? "")'")
            }
            connector.pause()
            return json(.ok, statusJSON(connector.status))
        }
        router.post("v1/connectors/:name/resume") { _, context in
            guard let connector = sidecar.connector(named: context.parameters.get("name") ?? "") else {
                return error(.notFound, "no connector named '\(context.parameters.get("name") ?? "")'")
            }
            connector.resume()
            return json(.ok, statusJSON(connector.status))
        }
        router.post("v1/publish/:topic") { request, context in
            let topic = context.parameters.get("topic") ?? ""
            let cluster = request.uri.queryParameters.get("cluster") ?? sidecar.defaultCluster
            let body = try await request.body.collect(upTo: PublishAPI.maxBodyBytes)
            return await PublishAPI.publish(
                topic: topic, cluster: cluster, body: Array(body.readableBytesView),
                contentType: request.headers[.contentType], key: request.uri.queryParameters.get("key"), sidecar: sidecar)
        }
        return router
    }

    static func statusJSON(_ status: ConnectorStatus) -> JSONValue {
        .object([
            "name": .string(status.name), "state": .string(status.state.rawValue), "ready": .bool(status.isReady),
            "assigned_partitions": .array(status.assignedPartitions.map { .string($0.description) }),
            "lag": .object(Dictionary(uniqueKeysWithValues: status.lag.map { ($0.key.description, JSONValue.number(Double($0.value))) })),
            "in_flight": .number(Double(status.inFlight)),
            "last_error": status.lastError.map(JSONValue.string) ?? .null,
        ])
    }

    static func json(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: value.serialized())))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(status, .object(["error": .string(message)]))
    }
}
