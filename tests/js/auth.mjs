// A wrong key must come back as the SDK's typed error.
import { GoogleGenAI } from "@google/genai";

const client = new GoogleGenAI({});
try {
  await client.interactions.create({ model: "gemini-3-flash-preview", input: "hi" });
  console.log(JSON.stringify({ wrong: null }));
} catch (err) {
  console.log(JSON.stringify({ wrong: [err.constructor.name, err.status] }));
}
