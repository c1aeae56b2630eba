// Talking to the hub: the key, JSON requests, and the connection state every page shows.
const API = "/api/v1";
const KEY_STORAGE = "hub.apiKey";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

const listeners = new Set();
// What the screen knows of its link to the hub: reachable, and the time of the last
// answer (the "data as of" a disconnected screen shows).
export const link = { up: true, asOf: Date.now(), stream: "connecting", health: null };

export function onLink(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function setLink(change) {
  Object.assign(link, change);
  for (const fn of listeners) fn({ ...link });
}

export function key() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function saveKey(value) {
  sessionStorage.setItem(KEY_STORAGE, value);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

let onUnauthorised = () => {};
export function whenUnauthorised(fn) {
  onUnauthorised = fn;
}

export async function api(path, { method = "GET", body, signal, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${key()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    setLink({ up: false });
    throw new ApiError(0, "network");
  }
  if (response.status >= 502 && response.status <= 504 && !response.headers.get("content-type")?.includes("json")) {
    setLink({ up: false });
    throw new ApiError(response.status, "unreachable");
  }
  if (!link.up) setLink({ up: true });
  if (response.status === 401) {
    onUnauthorised();
    throw new ApiError(401, "unauthorised");
  }
  if (raw) return response;
  const json = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, json ? json.detail : response.statusText);
  setLink({ asOf: Date.now() });
  return json;
}

// Server-sent events over fetch (EventSource cannot send the Authorization header).
// Calls onEvent(kind, data) per event and onState("live" | "down") as the link changes;
// reconnects with a growing pause until the signal aborts.
export async function sse(path, { signal, onEvent, onState }) {
  let pause = 1000;
  while (!signal.aborted && key()) {
    try {
      const response = await fetch(API + path, { headers: { Authorization: `Bearer ${key()}` }, signal });
      if (response.status === 401) {
        onUnauthorised();
        return;
      }
      if (!response.ok) throw new Error(`stream answered ${response.status}`);
      onState("live");
      pause = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let kind = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) onEvent(kind, JSON.parse(data));
          else onEvent("comment", null);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    onState("down");
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, 10_000);
  }
}
