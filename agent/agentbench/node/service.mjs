// The simplest service a user would write instead of the agent, for
// `delen bench cpu --node`: mqtt.js + onnxruntime-node, one full model (no
// exits, no dedupe, no history), the result published on receipt.
//   node service.mjs URL PREFIX MODEL.onnx SCALE
import mqtt from "mqtt";
import ort from "onnxruntime-node";
import { encode, decode } from "@msgpack/msgpack";

const [url, prefix, model, scaleArg] = process.argv.slice(2);
const scale = Number(scaleArg);
const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
const inputName = session.inputNames[0];
const outputName = session.outputNames[session.outputNames.length - 1]; // the last exit's logits
const client = mqtt.connect(url, { clientId: `${prefix}-node`, clean: true });

client.on("connect", () => {
  client.subscribe(`${prefix}/+/requests`, { qos: 1 }, (err) => {
    if (err) { console.error(err); process.exit(1); }
    console.log("ready");
  });
});

client.on("message", async (topic, payload) => {
  const tenant = topic.split("/")[1];
  const req = decode(payload);
  const u = req.input.data;
  const x = new Float32Array(u.length);
  for (let i = 0; i < u.length; i++) x[i] = u[i] * scale;
  const out = await session.run({ [inputName]: new ort.Tensor("float32", x, [1, 1, 28, 28]) }, [outputName]);
  const logits = out[outputName].data;
  let best = 0, max = -Infinity, sum = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) { max = logits[i]; best = i; }
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  client.publish(`${prefix}/${tenant}/results`,
    Buffer.from(encode({ v: 1, id: req.id, tenant, status: "ok", class: best, confidence: 1 / sum })), { qos: 1 });
});
