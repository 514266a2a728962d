/// <reference path="../types/moat.d.ts" />
// An RPC service: the porch light, switched by anyone on the bus — other
// scripts (moat.call), `moat call` on a shell, any MoaT peer — and by a
// motion sensor's alerts. It announces every change as an alert.
//
//   moat script def add porchsvc rpc_service.ts "porch light service"
//   moat script add porchsvc myhost/porchsvc light=false hold=300
//   moat call porch.light.set '{"on": true}'      # → {"on":true}
//   moat call porch.light.get                     # → {"on":true}
//   moat listen 'porch.light.#'                   # porch.light.changed {"on":…,"why":…}
//   moat alert porch.motion                       # on now, off after "hold" seconds
//
// The task's data value "light" (true = on) is what drives the lamp; it must
// exist (light=false above), since a script cannot add new values.
moat.setup();

/** The RPC names are SERVICE.get and SERVICE.set. */
const service = moat.data.get<string>("service") ?? "porch.light";
/** How long the light stays on after the last motion, seconds. */
const hold = moat.data.get<number>("hold") ?? 300;

let on = moat.data.get<boolean>("light") === true;
let offTimer: MoatTimer | undefined;

/** Switch the light (if it changes), announce it, and log it. */
async function switchLight(value: boolean, why: string): Promise<void> {
  if (value !== on) {
    on = value;
    await moat.data.set("light", value);
  }
  await moat.alert(`${service}.changed`, { on, why });
  moat.logger.info(`light ${on ? "on" : "off"} (${why})`);
}

// SERVICE.get: the light's state. A handler's return value is the reply.
moat.rpc(`${service}.get`)(() => ({ on }));

// SERVICE.set {"on": true|false}: switch it. What a handler throws goes back
// to the caller as the error (`moat call` prints it, moat.call rejects).
moat.rpc(`${service}.set`)(async (args: { on?: unknown } | null) => {
  if (typeof args?.on !== "boolean") {
    throw new TypeError(`${service}.set expects {"on": true} or {"on": false}`);
  }
  offTimer?.cancel(); // an explicit switch beats the motion timer
  offTimer = undefined;
  await switchLight(args.on, "rpc");
  return { on };
});

// Motion: on at once, off `hold` seconds after the last motion. The handler
// switches through the service's own RPC, like every other client, so the
// rules of switching live in one place.
moat.on_alert("porch.motion")(async () => {
  await moat.call(`${service}.set`, { on: true }, { timeout: 5 });
  const now = await moat.time_at([], { current: true });
  offTimer?.cancel();
  offTimer = moat.run_at([], () => switchLight(false, "no motion"), { now: now + hold });
});

moat.on_start(() => moat.logger.info(`serving ${service}.get and ${service}.set`));
// No moat.run: the service runs until the host stops it.
