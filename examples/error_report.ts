/// <reference path="../types/moat.d.ts" />
// Check the batteries of every sensor below a node once an hour, and keep
// one error record per sensor whose battery is low.
//
//   etcdctl put /moat/meta/script/batteries/:code/types/sensors str/ref
//   etcdctl put /moat/meta/script/batteries/:code/types/min int
//   etcdctl put /moat/meta/script/batteries/:code/values/min 20
//   moat script add batteries myhost/batteries sensors=device/window
//
// Each sensor is a child node with a "battery" value in percent.
// `moat errors myhost/batteries` lists the low ones.
moat.setup();

const min = moat.data.get<number>("min") ?? 20;
const every = moat.data.get<number>("interval") ?? 3600; // seconds

/** Error tags are letters, digits, "_", "." and "-": make one from a name. */
const tagOf = (name: string) => `battery.${name.replace(/[^A-Za-z0-9_.-]/g, "_")}`;

async function check() {
  const sensors = moat.data.get<MoatNode>("sensors");
  if (sensors === undefined) {
    await moat.set_error("no_sensors", 'the node named by "sensors" does not exist');
    return;
  }
  await moat.clear_error("no_sensors");
  let low = 0;
  for (const name of sensors.keys()) {
    const sensor = sensors.get(name);
    if (typeof sensor !== "object" || sensor === null || !("keys" in sensor)) continue;
    const battery = (sensor as MoatNode).get("battery");
    if (typeof battery !== "number") continue;
    if (battery < min) {
      low++;
      // Setting it again next hour counts it again: `moat errors` shows how
      // many checks found the battery low.
      await moat.set_error(tagOf(name), `battery of ${name} at ${battery} %`);
    } else {
      // Fine now (a new battery?): remove the record, if there is one.
      await moat.clear_error(tagOf(name));
    }
  }
  moat.logger.info(`checked ${sensors.keys().length} sensors, ${low} low`);
}

moat.run(async () => {
  for (;;) {
    await check();
    // The host's clock, in seconds; under `moat script try` it is the virtual
    // clock (as Date.now() is there), so a try runs a week of checks in seconds.
    const now = await moat.time_at([], { current: true });
    await moat.wait({ now: now + every });
  }
});
