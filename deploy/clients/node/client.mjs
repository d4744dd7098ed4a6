// Publish one request to a Dělen agent over MQTT (msgpack) and print the
// result as JSON:  node client.mjs mqtt://127.0.0.1:1883 cam1 [frame.jpg]
// With a JPEG or PNG file, the file itself is the input (the agent decodes,
// resizes and normalises it).
import { readFileSync } from "node:fs";
import mqtt from "mqtt";
import { encode, decode } from "@msgpack/msgpack";

const [url = "mqtt://127.0.0.1:1883", tenant = "cam1", image] = process.argv.slice(2);
const id = `node-${Date.now()}`;

// A 28×28 uint8 image: a vertical bar, roughly a "1".
const pixels = new Uint8Array(28 * 28);
for (let y = 4; y < 24; y++) for (let x = 13; x < 16; x++) pixels[y * 28 + x] = 255;

const client = mqtt.connect(url, { clientId: id, clean: true });
const timer = setTimeout(() => { console.error("no result within 10 s"); process.exit(1); }, 10000);

client.on("connect", async () => {
  await client.subscribeAsync(`delen/${tenant}/results`, { qos: 1 });
  const request = {
    id,
    input: image
      ? { format: /\.png$/i.test(image) ? "png" : "jpeg", data: readFileSync(image) }
      : { dtype: "uint8", shape: [1, 28, 28], data: pixels },
    bound: { latency_ms: 50, confidence: 0.9 },
    sent_at: Date.now() * 1000,
  };
  await client.publishAsync(`delen/${tenant}/requests`, Buffer.from(encode(request)), { qos: 1 });
});

client.on("message", (topic, payload) => {
  const result = decode(payload);
  if (result.id !== id) return;
  clearTimeout(timer);
  console.log(JSON.stringify(result));
  client.end();
});
