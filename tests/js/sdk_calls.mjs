// Drives @google/genai through every interactions call and prints a JSON report for test_js_sdk.py.
import { GoogleGenAI } from "@google/genai";

const client = new GoogleGenAI({});
const model = "gemini-3-flash-preview";
const report = {};

const created = await client.interactions.create({ model, input: "Say hello." });
report.created = { status: created.status, output_text: created.output_text, steps: created.steps };

const got = await client.interactions.get(created.id);
report.got = { steps: got.steps };

const types = async (stream) => {
  const out = [];
  for await (const event of stream) out.push(event);
  return out;
};
const replay = await types(await client.interactions.get(created.id, { stream: true }));
report.replayed = replay.map((e) => e.event_type);
const resumed = await types(
  await client.interactions.get(created.id, { stream: true, last_event_id: replay[2].event_id }),
);
report.resumed = resumed.map((e) => e.event_type);

const errorOf = async (promise) => {
  try {
    await promise;
    return null;
  } catch (err) {
    return [err.constructor.name, err.status];
  }
};
report.errors = {
  badRequest: await errorOf(client.interactions.create({ model, input: "x", bogus_field: 1 })),
  notFound: await errorOf(client.interactions.get("v1_does_not_exist")),
  unknownModel: await errorOf(client.interactions.create({ model: "no-such-model", input: "x" })),
};

await client.interactions.delete(created.id);
report.deleted = await errorOf(client.interactions.get(created.id));

// The seed's advice: skip event types you do not know.
let text = "";
for await (const event of await client.interactions.create({ model, input: "send a future event", stream: true })) {
  if (event.event_type === "step.delta" && event.delta.type === "text") text += event.delta.text;
}
report.unknownEventSkipped = text;

let id = null;
let errorCode = null;
let last = null;
for await (const event of await client.interactions.create({ model, input: "fail midway", stream: true })) {
  if (event.event_type === "interaction.created") id = event.interaction.id;
  if (event.event_type === "error") errorCode = event.error.code;
  last = event.event_type;
}
report.midStreamError = { error: errorCode, last, status: (await client.interactions.get(id)).status };

// background: create answers at once; the run is followed by id, then cancelled.
const hanging = JSON.stringify({ script: [{ text: "a" }, { hang: true }] });
const background = await client.interactions.create({ model, input: hanging, background: true });
const follower = await client.interactions.get(background.id, { stream: true });
const followed = [];
for await (const event of follower) {
  followed.push(event.event_type);
  if (event.event_type === "step.delta") {
    await client.interactions.cancel(background.id);
  }
}
report.background = {
  created: background.status,
  followed,
  final: (await client.interactions.get(background.id)).status,
};

console.log(JSON.stringify(report));
