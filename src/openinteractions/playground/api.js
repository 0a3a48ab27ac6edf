// The public Interactions API, as any client calls it: JSON over fetch, the key in x-goog-api-key, streams as
// server-sent events read from the response body.

const KEY_SLOT = "openinteractions.playground.key";
export const VERSION = "v1beta";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }

  get needsKey() {
    return this.status === 401 || this.status === 403;
  }
}

export class Api {
  constructor() {
    // sessionStorage: the key lives as long as this tab, and is never written to disk by the page.
    this.key = sessionStorage.getItem(KEY_SLOT) || "";
  }

  setKey(key) {
    this.key = key.trim();
    if (this.key) sessionStorage.setItem(KEY_SLOT, this.key);
    else sessionStorage.removeItem(KEY_SLOT);
  }

  headers(body) {
    const headers = {};
    if (this.key) headers["x-goog-api-key"] = this.key;
    if (body !== undefined) headers["content-type"] = "application/json";
    return headers;
  }

  async send(method, path, body, signal, accept) {
    const headers = this.headers(body);
    if (accept) headers.accept = accept;
    const response = await fetch(`/${VERSION}/${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
    if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
    return response;
  }

  async json(method, path, body) {
    const response = await this.send(method, path, body);
    return response.json();
  }

  models() {
    return this.json("GET", "models?pageSize=1000");
  }

  interaction(id) {
    return this.json("GET", `interactions/${encodeURIComponent(id)}?include_input=true`);
  }

  cancel(id) {
    return this.json("POST", `interactions/${encodeURIComponent(id)}/cancel`);
  }

  remove(id) {
    return this.json("DELETE", `interactions/${encodeURIComponent(id)}`);
  }

  /** Creates an interaction with stream: true; yields its events. */
  async *create(body, signal) {
    const response = await this.send("POST", "interactions", { ...body, stream: true }, signal, "text/event-stream");
    yield* events(response);
  }

  /** Follows an interaction's stream: from the start, or after the event ``lastEventId``. */
  async *follow(id, lastEventId, signal) {
    let path = `interactions/${encodeURIComponent(id)}?stream=true`;
    if (lastEventId) path += `&last_event_id=${encodeURIComponent(lastEventId)}`;
    const response = await this.send("GET", path, undefined, signal, "text/event-stream");
    yield* events(response);
  }
}

async function errorMessage(response) {
  const text = await response.text();
  try {
    return JSON.parse(text).error.message || text;
  } catch {
    return text || response.statusText;
  }
}

/** The data of each server-sent event, parsed; comments (keep-alives) and the final [DONE] are skipped. */
export async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
    buffer = blocks.pop();
    for (const block of blocks) {
      const data = block
        .split(/\r\n|\n|\r/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5))
        .join("\n");
      if (data && data !== "[DONE]") yield JSON.parse(data);
    }
  }
}
