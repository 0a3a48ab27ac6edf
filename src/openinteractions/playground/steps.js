// One view per step of an interaction: built from a step.start, grown by its step.deltas, or filled at once
// from a stored step. Each keeps the step as data and renders from it (once per frame while it streams).

import { el, mediaSource, pretty, throttled } from "./dom.js";
import { markdown } from "./markdown.js";

const MEDIA = new Set(["image", "audio", "video", "document"]);

class StepView {
  constructor(step) {
    this.step = { ...step };
    this.root = el("li", { class: `step ${this.kind()}`, "data-type": step.type });
    this.schedule = throttled(() => this.render());
  }

  kind() {
    return "other";
  }

  /** A delta of a server tool's step carries that step's fields (arguments, result, is_error). */
  delta(delta) {
    const { type, ...fields } = delta;
    Object.assign(this.step, fields);
    this.schedule();
  }

  stop() {
    this.root.classList.add("done");
    this.render();
  }

  fill(step) {
    this.step = { ...step };
    this.stop();
  }

  render() {
    this.root.replaceChildren(el("pre", { class: "raw" }, pretty(this.step)));
  }
}

class ThoughtView extends StepView {
  constructor(step) {
    super(step);
    this.summary = [...(step.summary || [])];
    this.body = el("div", { class: "summary md" });
    this.details = el("details", {}, el("summary", {}, "Thought"), this.body);
    this.root.append(this.details);
  }

  kind() {
    return "thought";
  }

  delta(delta) {
    if (delta.type === "thought_summary" && delta.content) this.summary.push(delta.content);
    this.schedule();
  }

  fill(step) {
    this.summary = [...(step.summary || [])];
    this.stop();
  }

  render() {
    const text = this.summary.filter((c) => c.type === "text").map((c) => c.text).join("");
    const images = this.summary.filter((c) => c.type === "image").map((c) => el("img", { src: mediaSource(c) }));
    this.details.firstChild.textContent = text ? `Thought: ${firstLine(text)}` : "Thought (no summary)";
    this.body.innerHTML = markdown(text);
    this.body.append(...images);
  }
}

class OutputView extends StepView {
  constructor(step) {
    super(step);
    this.blocks = [...(step.content || [])].map((block) => ({ ...block }));
  }

  kind() {
    return "model_output";
  }

  delta(delta) {
    const last = this.blocks.at(-1);
    if (delta.type === "text") {
      if (last && last.type === "text") last.text += delta.text;
      else this.blocks.push({ type: "text", text: delta.text });
    } else if (delta.type === "text_annotation_delta") {
      if (last && last.type === "text") last.annotations = [...(last.annotations || []), ...(delta.annotations || [])];
    } else if (MEDIA.has(delta.type)) {
      this.blocks.push({ ...delta });
    }
    this.schedule();
  }

  fill(step) {
    this.blocks = [...(step.content || [])].map((block) => ({ ...block }));
    if (step.error) this.blocks.push({ type: "error", ...step.error });
    this.stop();
  }

  render() {
    this.root.replaceChildren(...this.blocks.map(renderBlock));
  }
}

function renderBlock(block) {
  if (block.type === "text") {
    const text = el("div", { class: "md" });
    text.innerHTML = markdown(block.text || "");
    return el("div", { class: "block text" }, text, citations(block.annotations || []));
  }
  const src = mediaSource(block);
  if (block.type === "image") return el("img", { class: "block image", src, alt: "image from the model" });
  if (block.type === "audio") return el("audio", { class: "block audio", src, controls: true });
  if (block.type === "video") return el("video", { class: "block video", src, controls: true });
  if (block.type === "document") {
    return el("a", { class: "block document", href: src, download: "document" }, `document (${block.mime_type})`);
  }
  if (block.type === "error") return el("div", { class: "block error" }, `error ${block.code}: ${block.message}`);
  return el("pre", { class: "block raw" }, pretty(block));
}

function citations(annotations) {
  const seen = new Map();
  for (const note of annotations) {
    const url = note.url || note.document_uri;
    if (url && !seen.has(url)) seen.set(url, note.title || note.file_name || url);
  }
  if (!seen.size) return null;
  const items = [...seen].map(([url, title]) =>
    el("li", {}, el("a", { href: safeUrl(url), target: "_blank", rel: "noopener noreferrer", title: url }, title)),
  );
  return el("div", { class: "citations" }, el("span", {}, "Sources"), el("ol", {}, ...items));
}

function safeUrl(url) {
  return /^(https?|file):/i.test(url) ? url : "#";
}

class FunctionCallView extends StepView {
  constructor(step) {
    super(step);
    this.fragments = "";
  }

  kind() {
    return "function_call";
  }

  delta(delta) {
    if (delta.type === "arguments_delta") this.fragments += delta.arguments || "";
    this.schedule();
  }

  stop() {
    if (this.fragments) {
      try {
        this.step.arguments = JSON.parse(this.fragments);
      } catch {
        this.step.arguments = this.fragments; // cut off (a cancel, the token limit): shown as it came
      }
    }
    super.stop();
  }

  render() {
    const args = this.root.classList.contains("done") || !this.fragments ? pretty(this.step.arguments || {}) : this.fragments;
    this.root.replaceChildren(
      el("div", { class: "head" }, el("span", { class: "icon" }, "ƒ"), el("b", {}, this.step.name || "?"),
        el("code", { class: "call-id" }, this.step.id || "")),
      el("pre", { class: "args" }, args),
    );
  }
}

class FunctionResultView extends StepView {
  kind() {
    return "function_result";
  }

  render() {
    this.root.replaceChildren(
      el("div", { class: "head" }, el("span", { class: "icon" }, "↩"), el("b", {}, this.step.name || "result"),
        el("code", { class: "call-id" }, this.step.call_id || ""), this.step.is_error ? " (error)" : ""),
      el("pre", { class: "result" }, pretty(this.step.result ?? "")),
    );
  }
}

class ToolCallView extends StepView {
  kind() {
    return "tool_call";
  }

  render() {
    const name = this.step.type.replace(/_call$/, "");
    const args = this.step.arguments || {};
    const body = args.code !== undefined
      ? el("pre", { class: "args code" }, args.code)
      : el("div", { class: "args" }, ...Object.entries(args).map(([key, value]) =>
        el("div", {}, el("span", { class: "arg-name" }, `${key}: `), el("code", {}, compact(value)))));
    this.root.replaceChildren(el("div", { class: "head" }, el("span", { class: "icon" }, "⚙"), el("b", {}, name)), body);
  }
}

class ToolResultView extends StepView {
  constructor(step) {
    super(step);
    this.details = el("details", {}, el("summary", {}), el("pre", { class: "result" }));
    this.root.append(this.details);
  }

  kind() {
    return "tool_result";
  }

  render() {
    const name = this.step.type.replace(/_result$/, "");
    const result = this.step.result;
    const said = Array.isArray(result) ? `${result.length} item${result.length === 1 ? "" : "s"}` : firstLine(pretty(result ?? ""));
    this.details.firstChild.textContent = `→ ${name}${this.step.is_error ? " failed" : ""}: ${said}`;
    this.details.lastChild.textContent = pretty(result ?? "");
  }
}

class InputView extends StepView {
  kind() {
    return "user_input";
  }

  render() {
    this.root.replaceChildren(...(this.step.content || []).map(renderBlock));
  }
}

function compact(value) {
  return Array.isArray(value) && value.every((item) => typeof item === "string")
    ? value.join(", ")
    : JSON.stringify(value);
}

function firstLine(text) {
  const line = text.trim().split("\n")[0].replace(/[*#_`]/g, "");
  return line.length > 90 ? `${line.slice(0, 89)}…` : line;
}

export function stepView(step) {
  const type = step.type || "";
  if (type === "thought") return new ThoughtView(step);
  if (type === "model_output") return new OutputView(step);
  if (type === "function_call") return new FunctionCallView(step);
  if (type === "function_result") return new FunctionResultView(step);
  if (type === "user_input") return new InputView(step);
  if (type.endsWith("_call")) return new ToolCallView(step);
  if (type.endsWith("_result")) return new ToolResultView(step);
  return new StepView(step);
}
