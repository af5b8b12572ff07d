/**
 * UPnP-IGD: parsing (SSDP replies, device descriptions, SOAP faults) and
 * the port mapper against a tiny fake IGD over HTTP on loopback (a
 * WANIPConnection:1 control URL keeping a mapping table).
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import {
  discoverIgd,
  findWanService,
  parseSsdpReply,
  soapCall,
  soapEnvelope,
  UpnpError,
  xmlText,
} from "../../src/nat/portmap/upnp.ts";
import { describeReport, PortMapper } from "../../src/nat/portmap/mod.ts";

const SERVICE = "urn:schemas-upnp-org:service:WANIPConnection:1";

/** A device description with the WAN service nested as in real routers. */
function description(controlUrl: string, base = ""): string {
  return `<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0">${base}
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>
<controlURL>/ctl/L3F</controlURL></service></serviceList>
<deviceList><device><deviceList><device><serviceList><service>
<serviceType>${SERVICE}</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<controlURL>${controlUrl}</controlURL></service></serviceList></device></deviceList></device>
</deviceList></device></root>`;
}

/** A SOAP fault as an IGD sends it (HTTP 500). */
function fault(code: number, text: string): Response {
  return new Response(
    `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>` +
      `<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>` +
      `<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode>` +
      `<errorDescription>${text}</errorDescription></UPnPError></detail></s:Fault></s:Body>` +
      `</s:Envelope>`,
    { status: 500, headers: { "content-type": "text/xml" } },
  );
}

/** A fake IGD: description at /desc.xml, control at /ctl/IPConn. */
class FakeIgd {
  readonly table = new Map<number, { internal: string; lease: number }>();
  readonly actions: string[] = [];
  external = "203.0.113.9";
  /** Answer AddPortMapping with lease > 0 by error 725, as some v1 IGDs do. */
  permanentOnly = false;
  #server: Deno.HttpServer | null = null;
  port = 0;

  start(): void {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => this.#handle(req),
    );
    this.port = (this.#server.addr as Deno.NetAddr).port;
  }

  get location(): string {
    return `http://127.0.0.1:${this.port}/desc.xml`;
  }

  async stop(): Promise<void> {
    await this.#server?.shutdown();
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname === "/desc.xml") return new Response(description("/ctl/IPConn"));
    if (url.pathname !== "/ctl/IPConn" || req.method !== "POST") {
      return new Response("no", { status: 404 });
    }
    const action = (req.headers.get("soapaction") ?? "").replace(/^"|"$/g, "").split("#")[1];
    const body = await req.text();
    this.actions.push(action);
    const arg = (name: string) => xmlText(body, name) ?? "";
    const ok = (inner = "") =>
      new Response(
        `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>` +
          `<u:${action}Response xmlns:u="${SERVICE}">${inner}</u:${action}Response></s:Body></s:Envelope>`,
      );
    switch (action) {
      case "GetExternalIPAddress":
        return ok(`<NewExternalIPAddress>${this.external}</NewExternalIPAddress>`);
      case "AddPortMapping": {
        const lease = Number(arg("NewLeaseDuration"));
        if (this.permanentOnly && lease !== 0) return fault(725, "OnlyPermanentLeasesSupported");
        this.table.set(Number(arg("NewExternalPort")), {
          internal: arg("NewInternalClient"),
          lease,
        });
        return ok();
      }
      case "GetSpecificPortMappingEntry":
        return this.table.has(Number(arg("NewExternalPort")))
          ? ok("<NewInternalPort>1</NewInternalPort>")
          : fault(714, "NoSuchEntryInArray");
      case "DeletePortMapping":
        return this.table.delete(Number(arg("NewExternalPort")))
          ? ok()
          : fault(714, "NoSuchEntryInArray");
      default:
        return fault(401, "Invalid Action");
    }
  }
}

/** A fake IGD and a mapper using it (UPnP only, or "auto" with a silent NAT-PMP port). */
async function withIgd(
  fn: (igd: FakeIgd, mapper: PortMapper) => Promise<void>,
  options: { auto?: boolean; setup?: (igd: FakeIgd) => void } = {},
): Promise<void> {
  const igd = new FakeIgd();
  options.setup?.(igd);
  igd.start();
  // "auto" asks NAT-PMP first: a bound socket that never answers.
  const silent = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => silent.bind(0, "127.0.0.1", resolve));
  const mapper = new PortMapper({
    protocol: options.auto ? "auto" : "upnp",
    gateway: "127.0.0.1",
    gatewayPort: silent.address().port,
    firstWaitMs: 20,
    attempts: 2,
    upnpLocation: igd.location,
    internalAddress: "10.0.0.2",
    ports: [2121, 50000, 50001],
    leaseSeconds: 600,
  });
  try {
    await fn(igd, mapper);
  } finally {
    await mapper.stop();
    await igd.stop();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  }
}

Deno.test("ssdp: a reply's headers, names lower-cased", () => {
  const h = parseSsdpReply(
    "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:" +
      "InternetGatewayDevice:1\r\nLOCATION: http://10.0.0.1:5000/rootDesc.xml\r\n\r\n",
  );
  assert.equal(h["location"], "http://10.0.0.1:5000/rootDesc.xml");
  assert.equal(h["st"], "urn:schemas-upnp-org:device:InternetGatewayDevice:1");
});

Deno.test("description: the WAN service's control URL, made absolute", () => {
  assert.deepEqual(
    findWanService(description("/ctl/IPConn"), "http://10.0.0.1:5000/rootDesc.xml"),
    {
      serviceType: SERVICE,
      controlUrl: "http://10.0.0.1:5000/ctl/IPConn",
    },
  );
  const based = description("ctl", "<URLBase>http://10.0.0.1:49000/igd/</URLBase>");
  assert.equal(
    findWanService(based, "http://10.0.0.1:5000/x.xml")?.controlUrl,
    "http://10.0.0.1:49000/igd/ctl",
  );
  assert.equal(findWanService("<root><device></device></root>", "http://x/"), null);
});

Deno.test("soap: the envelope escapes values; a fault is an UpnpError with its code", async () => {
  const env = soapEnvelope(SERVICE, "AddPortMapping", [["NewPortMappingDescription", "a<b&c"]]);
  assert.match(env, /<u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">/);
  assert.match(env, /<NewPortMappingDescription>a&lt;b&amp;c<\/NewPortMappingDescription>/);
  const igd = new FakeIgd();
  igd.start();
  try {
    const service = { serviceType: SERVICE, controlUrl: `http://127.0.0.1:${igd.port}/ctl/IPConn` };
    await assert.rejects(
      soapCall(service, "Nope", []),
      (e) => e instanceof UpnpError && e.code === 401,
    );
    const found = await discoverIgd({ location: igd.location });
    assert.equal(found?.controlUrl, service.controlUrl);
  } finally {
    await igd.stop();
  }
});

Deno.test("upnp mapper: maps, reports the WAN address, and deletes on stop", async () => {
  await withIgd(async (igd, mapper) => {
    const report = await mapper.start();
    assert.equal(report.error, null, JSON.stringify(report));
    assert.equal(report.protocol, "upnp");
    assert.equal(report.gateway, "127.0.0.1");
    assert.equal(report.externalAddress, "203.0.113.9");
    assert.deepEqual([...igd.table.keys()].sort(), [2121, 50000, 50001]);
    assert.deepEqual(igd.table.get(2121), { internal: "10.0.0.2", lease: 600 });
    assert.match(describeReport(report)[0], /answered over UPnP-IGD, WAN address 203\.0\.113\.9/);
    await mapper.stop();
    assert.equal(igd.table.size, 0);
  });
});

Deno.test("upnp mapper: lost entries (router reboot) are found at renewal and mapped again", async () => {
  await withIgd(async (igd, mapper) => {
    await mapper.start();
    const again = await mapper.renewNow();
    assert.equal(again.gatewayRestarted, false);
    igd.table.clear();
    const repaired = await mapper.renewNow();
    assert.equal(repaired.gatewayRestarted, true);
    assert.equal(igd.table.size, 3);
    assert.equal(mapper.snapshot().gatewayRestarts, 1);
  });
});

Deno.test("upnp mapper: an IGD that takes only permanent leases gets lease 0", async () => {
  await withIgd(async (igd, mapper) => {
    const report = await mapper.start();
    assert.equal(report.mapped.length, 3);
    assert.equal(igd.table.get(2121)?.lease, 0);
    assert.equal(report.mapped[0].expiresAt, null);
  }, { setup: (igd) => igd.permanentOnly = true });
});

Deno.test("auto: no NAT-PMP answer, so UPnP-IGD is used", async () => {
  await withIgd(async (igd, mapper) => {
    const report = await mapper.start();
    assert.equal(report.protocol, "upnp", JSON.stringify(report));
    assert.equal(igd.table.size, 3);
    assert.equal(mapper.snapshot().protocol, "upnp");
  }, { auto: true });
});

Deno.test("auto: neither protocol answers: both reasons are reported", async () => {
  await withIgd(async (igd, mapper) => {
    await igd.stop();
    const report = await mapper.start();
    assert.equal(report.protocol, null);
    assert.match(
      report.error ?? "",
      /^NAT-PMP: no NAT-PMP reply .*; UPnP-IGD: no UPnP-IGD gateway/,
    );
    assert.match(describeReport(report)[0], /^port mapping: no gateway answered: NAT-PMP/);
  }, { auto: true });
});
