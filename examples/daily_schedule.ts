/// <reference path="../types/moat.d.ts" />
// A daily schedule: the porch light goes on at 07:30 and off at 23:00.
//
// The script does not switch a lamp itself: it writes the task's data value
// "light" (true = on) with moat.data.set, and whatever drives the lamp
// follows that value. Declare it once on the script:
//
//   etcdctl put /moat/meta/script/porch/:code/types/light bool
//   etcdctl put /moat/meta/script/porch/:code/values/light false
//
// The times are task data too, so one script serves every light:
//
//   moat script add porch myhost/porch on_at="7 hr 30 min" off_at="23 hr"
//
// Time specifications are described in docs/time.md; `moat time 7 hr 30 min`
// previews one.
moat.setup();

// Read the task's values; fall back to the defaults when the task has none.
const onAt = moat.data.get<string>("on_at") ?? "7 hr 30 min";
const offAt = moat.data.get<string>("off_at") ?? "23 hr";

/** Unix seconds as readable text for the log. */
const show = (t: number) => new Date(t * 1000).toISOString();

/** Write the light's value, and say so. */
async function switchLight(on: boolean, why: string) {
  await moat.data.set("light", on);
  moat.logger.info(`light ${on ? "on" : "off"} (${why})`);
}

moat.run(async () => {
  // The script may start at any time of day (a reboot, an update), so first
  // work out what the light should be *now*: if "on" comes before "off",
  // we are in the dark part of the day.
  let nextOn = await moat.time_at(onAt);
  let nextOff = await moat.time_at(offAt);
  moat.logger.info(`next on at ${show(nextOn)}, next off at ${show(nextOff)}`);
  await switchLight(nextOn > nextOff, "at start");

  // Then sleep until the earlier of the two moments, switch, and repeat.
  // moat.wait({ now: T }) waits until Unix time T; it survives clock jumps.
  for (;;) {
    if (nextOn < nextOff) {
      await moat.wait({ now: nextOn });
      await switchLight(true, onAt);
      nextOn = await moat.time_at(onAt);
    } else {
      await moat.wait({ now: nextOff });
      await switchLight(false, offAt);
      nextOff = await moat.time_at(offAt);
    }
    moat.logger.info(`next on at ${show(nextOn)}, next off at ${show(nextOff)}`);
  }
});
