/// <reference path="../types/moat.d.ts" />
// Watch a freezer's temperature and raise an error while it is too warm.
//
// The script does not know which freezer: the task's data value "device"
// names the device node. Declare it as a reference on the script, so that
// moat.data.get("device") gives the node itself:
//
//   etcdctl put /moat/meta/script/freezer/:code/types/device str/ref
//   etcdctl put /moat/meta/script/freezer/:code/types/max float
//   etcdctl put /moat/meta/script/freezer/:code/values/max -15
//   moat script add freezer myhost/freezer device=device/onewire/10/:dev
//
// The device node is expected to hold a "temp" value (°C). `moat errors`
// shows the "too_warm" record while it lasts.
moat.setup();

const device = moat.data.get<MoatNode>("device");
if (device === undefined) {
  // Throwing ends the run with an error; the host retries later.
  throw new Error('the node named by the data value "device" does not exist');
}
const max = moat.data.get<number>("max") ?? -15;

// Remember what we reported last, so that each change of state is recorded
// once (set_error on an error that is set already would count it again).
let warm: boolean | undefined;

moat.monitor(device)(async (change) => {
  // is_new: true on the first call, false on later changes, null when the
  // node was deleted.
  if (change.is_new === null) {
    await moat.set_error("device_gone", `${change.node.path} was deleted`);
    moat.logger.warn(`${change.node.path} was deleted`);
    return;
  }
  const temp = change.node.get("temp");
  if (typeof temp !== "number") return; // no reading yet
  moat.logger.info(`freezer at ${temp} °C`);
  if (temp > max && warm !== true) {
    warm = true;
    await moat.set_error("too_warm", `freezer at ${temp} °C, above ${max} °C`);
    moat.logger.warn("too warm: error recorded");
  } else if (temp <= max && warm !== false) {
    warm = false;
    // Clearing an error that is not there is fine: it does nothing.
    await moat.clear_error("too_warm");
    moat.logger.info("temperature fine: error cleared");
  }
});
// No moat.run: the script runs until the host stops it, reacting to changes.
