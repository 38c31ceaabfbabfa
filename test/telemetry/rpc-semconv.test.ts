import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { isServerError, rpcCallAttributes, rpcSemconv, rpcStatusAttributes } from "../../src/server/rpc-semconv.js";
import { parseHostPort } from "../../src/telemetry/host-port.js";

describe("RPC semantic conventions", () => {
  it("follow OTEL_SEMCONV_STABILITY_OPT_IN", () => {
    expect(rpcSemconv({})).toBe("old");
    expect(rpcSemconv({ OTEL_SEMCONV_STABILITY_OPT_IN: "http, rpc" })).toBe("stable");
    expect(rpcSemconv({ OTEL_SEMCONV_STABILITY_OPT_IN: "rpc/dup" })).toBe("dup");
  });

  it("name the call and its status the old way, the stable way, or both", () => {
    expect(rpcCallAttributes("kvwarden.v1.KvCache", "Decode", "old")).toEqual({ "rpc.system": "grpc", "rpc.service": "kvwarden.v1.KvCache", "rpc.method": "Decode" });
    expect(rpcCallAttributes("kvwarden.v1.KvCache", "Decode", "stable")).toEqual({ "rpc.system.name": "grpc", "rpc.method": "kvwarden.v1.KvCache/Decode" });
    expect(rpcCallAttributes("kvwarden.v1.KvCache", "Decode", "dup")).toMatchObject({ "rpc.system": "grpc", "rpc.system.name": "grpc", "rpc.method": "kvwarden.v1.KvCache/Decode" });
    expect(rpcStatusAttributes(status.OK, "old")).toEqual({ "rpc.grpc.status_code": 0 });
    expect(rpcStatusAttributes(status.RESOURCE_EXHAUSTED, "stable")).toEqual({ "rpc.status_code": "RESOURCE_EXHAUSTED", "error.type": "RESOURCE_EXHAUSTED" });
    expect(rpcStatusAttributes(status.OK, "dup")).toEqual({ "rpc.grpc.status_code": 0, "rpc.status_code": "OK" });
  });

  it("count only the server's faults as span errors", () => {
    expect([status.INTERNAL, status.UNAVAILABLE, status.DEADLINE_EXCEEDED].every(isServerError)).toBe(true);
    expect([status.OK, status.NOT_FOUND, status.INVALID_ARGUMENT, status.RESOURCE_EXHAUSTED, status.CANCELLED].some(isServerError)).toBe(false);
  });
});

describe("parseHostPort", () => {
  it("reads HOST:PORT, [IPv6]:PORT and :PORT", () => {
    expect(parseHostPort("0.0.0.0:9464")).toEqual({ host: "0.0.0.0", port: 9464 });
    expect(parseHostPort("[::1]:9464")).toEqual({ host: "::1", port: 9464 });
    expect(parseHostPort(":9464")).toEqual({ host: undefined, port: 9464 });
    expect(() => parseHostPort("9464")).toThrow(/HOST:PORT/);
    expect(() => parseHostPort("localhost:99999")).toThrow(/HOST:PORT/);
  });
});
