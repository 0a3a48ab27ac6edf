// One interaction on the timeline: what was asked, its steps as they stream (or as stored), its status, timing
// and usage, and the form that answers its function calls when it ends in requires_action.

import { el, pretty } from "./dom.js";
import { stepView } from "./steps.js";

const RUNNING = new Set(["in_progress", "queued"]);

export const isRunning = (status) => RUNNING.has(status);

export class Turn {
  /** ``asked``: what the user sent (text, or the function results); ``target``: "model m" or "agent a". */
  constructor({ asked, target }) {
    this.id = null;
    this.status = null;
    this.lastEventId = null;
    this.views = new Map();
    this.clock = { sent: performance.now(), first: null, content: null, end: null };
    this.statusBadge = el("span", { class: "status" });
    this.idLabel = el("code", { class: "interaction-id" });
    this.timing = el("span", { class: "timing" });
    this.usage = el("span", { class: "usage" });
    this.controls = el("span", { class: "controls" });
    this.asked = el("div", { class: "asked" });
    this.list = el("ol", { class: "steps" });
    this.errors = el("div", { class: "errors" });
    this.action = el("div", { class: "action" });
    const head = el("header", { class: "turn-head" }, el("span", { class: "target" }, target || ""), this.idLabel,
      this.statusBadge, this.timing, this.usage, this.controls);
    this.root = el("section", { class: "turn" }, this.asked, head, this.list, this.errors, this.action);
    this.setAsked(asked);
  }

  setAsked(asked) {
    if (typeof asked === "string") {
      this.asked.replaceChildren(el("div", { class: "bubble" }, asked));
    } else if (Array.isArray(asked) && asked.length) {
      this.asked.replaceChildren(...asked.map((item) => stepFor(item)));
    } else {
      this.asked.replaceChildren();
    }
  }

  /** Applies one event of the interaction's stream. */
  apply(event) {
    if (event.event_id) this.lastEventId = event.event_id;
    if (this.clock.first === null) this.clock.first = performance.now();
    switch (event.event_type) {
      case "interaction.created":
        this.setInteraction(event.interaction);
        break;
      case "interaction.status_update":
        this.setStatus(event.status);
        if (event.usage) this.setUsage(event.usage);
        break;
      case "step.start":
        this.view(event.index, event.step);
        break;
      case "step.delta":
        if (this.clock.content === null) this.clock.content = performance.now();
        this.view(event.index, { type: "unknown" }).delta(event.delta);
        break;
      case "step.stop":
        this.views.get(event.index)?.stop();
        break;
      case "interaction.completed":
        this.clock.end = performance.now();
        this.setInteraction(event.interaction);
        break;
      case "error":
        this.showError(event.error || {});
        break;
    }
    this.showTiming();
  }

  view(index, step) {
    let view = this.views.get(index);
    if (!view) {
      view = stepView(step);
      this.views.set(index, view);
      this.list.append(view.root);
      view.render();
    }
    return view;
  }

  /** Forgets the steps shown, before a stream is replayed from its start. */
  reset() {
    this.views.clear();
    this.list.replaceChildren();
    this.errors.replaceChildren();
    this.lastEventId = null;
  }

  setInteraction(interaction) {
    this.id = interaction.id;
    this.root.dataset.id = interaction.id;
    this.idLabel.textContent = interaction.id;
    if (interaction.status) this.setStatus(interaction.status);
    if (interaction.usage) this.setUsage(interaction.usage);
    this.created = interaction.created || this.created;
    this.updated = interaction.updated || this.updated;
  }

  setStatus(status) {
    this.status = status;
    this.statusBadge.textContent = status.replaceAll("_", " ");
    this.statusBadge.dataset.status = status;
    this.root.dataset.status = status;
  }

  setUsage(usage) {
    const parts = [["in", usage.total_input_tokens], ["out", usage.total_output_tokens],
      ["thought", usage.total_thought_tokens], ["tool", usage.total_tool_use_tokens]]
      .filter(([, n]) => n).map(([name, n]) => `${n} ${name}`);
    this.usage.textContent = parts.length ? `tokens: ${parts.join(" · ")}` : "";
    this.outputTokens = usage.total_output_tokens || 0;
  }

  showTiming() {
    const { sent, first, content, end } = this.clock;
    const parts = [];
    if (first !== null && !this.replayed) parts.push(`first event ${ms(first - sent)}`);
    if (content !== null && !this.replayed) parts.push(`first token ${ms(content - sent)}`);
    if (end !== null && !this.replayed) parts.push(`total ${ms(end - sent)}`);
    if (end !== null && content !== null && this.outputTokens && end > content && !this.replayed) {
      parts.push(`${(this.outputTokens / ((end - content) / 1000)).toFixed(1)} tokens/s`);
    }
    if (!parts.length && this.created && this.updated) {
      parts.push(`${new Date(this.created).toLocaleString()}, ${seconds(this.created, this.updated)}`);
    }
    this.timing.textContent = parts.join(" · ");
  }

  showError(error) {
    this.errors.append(el("div", { class: "error" }, `${error.code || "error"}: ${error.message || ""}`));
  }

  /** A stored interaction: its input and steps at once. */
  fill(interaction) {
    this.replayed = true;
    this.reset();
    this.setInteraction(interaction);
    const steps = interaction.steps || [];
    const inputs = steps.filter((step) => step.type === "user_input" || step.type === "function_result");
    const firstOutput = steps.findIndex((step) => !inputs.includes(step));
    const asked = firstOutput < 0 ? steps : steps.slice(0, firstOutput);
    const answered = firstOutput < 0 ? [] : steps.slice(firstOutput);
    if (asked.length) this.setAsked(asked);
    else if (interaction.input !== undefined) this.setAsked(inputText(interaction.input));
    answered.forEach((step, index) => this.view(index, step).fill(step));
    for (const error of interaction.errors || []) this.showError(error);
    this.showTiming();
  }

  /** The function calls of this interaction that no function_result of it answers yet. */
  pendingCalls() {
    const steps = [...this.views.values()].map((view) => view.step);
    const answered = new Set(steps.filter((s) => s.type === "function_result").map((s) => s.call_id));
    return steps.filter((s) => s.type === "function_call" && !answered.has(s.id));
  }

  /** The form that answers each pending call with the result the user types; ``submit`` gets the results. */
  askForResults(submit) {
    const calls = this.pendingCalls();
    if (!calls.length) return;
    const fields = calls.map((call) => {
      const box = el("textarea", { class: "result-input", rows: 2, placeholder: '{"result": ...} or plain text',
        "data-call-id": call.id, "aria-label": `result of ${call.name}` });
      return { call, box, row: el("label", { class: "call-result" },
        el("span", {}, `${call.name}(${short(pretty(call.arguments || {}))})`), box) };
    });
    const button = el("button", { type: "submit", class: "send-results" }, "Send results");
    const form = el("form", { class: "requires-action" },
      el("p", {}, "The model asks for these functions' results:"), ...fields.map((f) => f.row), button);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      form.remove();
      submit(fields.map(({ call, box }) => ({ type: "function_result", call_id: call.id, name: call.name,
        result: parseResult(box.value) })));
    });
    this.action.replaceChildren(form);
    fields[0].box.focus();
  }
}

function stepFor(step) {
  const view = stepView(step);
  view.fill(step);
  return view.root;
}

/** What the user typed as a function's result: JSON when it is JSON, otherwise the text itself. */
export function parseResult(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function inputText(input) {
  if (typeof input === "string") return input;
  return pretty(input);
}

function short(text) {
  const line = text.replace(/\s+/g, " ");
  return line.length > 60 ? `${line.slice(0, 59)}…` : line;
}

function ms(value) {
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(2)} s`;
}

function seconds(from, to) {
  return `${Math.max(0, (Date.parse(to) - Date.parse(from)) / 1000).toFixed(0)} s`;
}
