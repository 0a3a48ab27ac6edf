// The playground page: the settings and composer, sending, following and re-attaching to streams, and the
// conversations kept in this browser.

import { Api } from "./api.js";
import { el } from "./dom.js";
import { History } from "./history.js";
import { Settings } from "./settings.js";
import { Turn, isRunning } from "./turn.js";

const $ = (id) => document.getElementById(id);
const api = new Api();
const history = new History();
const settings = new Settings(api);
const timeline = $("timeline");
const RECONNECTS = 3;

let previous = null; // the conversation's last interaction: the next turn continues it
let busy = false;

function notice(message) {
  const box = $("notice");
  box.textContent = message || "";
  box.hidden = !message;
}

function setPrevious(id) {
  previous = id;
  $("conversation-label").textContent = id ? `continues ${id}` : "new conversation";
}

function setBusy(value) {
  busy = value;
  $("send").disabled = value;
}

function followBottom() {
  const atBottom = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 80;
  return () => {
    if (atBottom) timeline.scrollTop = timeline.scrollHeight;
  };
}

/** Sends one turn: the user's text, or the results of the last turn's function calls. */
async function send(input, title) {
  let request;
  try {
    request = settings.request(input);
  } catch (error) {
    notice(error.message);
    return;
  }
  notice("");
  if (previous) request.previous_interaction_id = previous;
  const turn = new Turn({ asked: input, target: settings.targetLabel() });
  turn.background = Boolean(request.background);
  timeline.append(turn.root);
  const continued = previous;
  await stream(turn, (signal) => api.create(request, signal), (id) => {
    history.add(id, continued, title, settings.targetLabel());
    setPrevious(id);
    renderHistory();
  });
}

/** Reads a stream into ``turn``; ``created`` is told the interaction's id once it exists. */
async function stream(turn, open, created) {
  setBusy(true);
  const controller = new AbortController();
  turn.controller = controller;
  showControls(turn);
  try {
    for await (const event of open(controller.signal)) {
      const scroll = followBottom();
      const known = turn.id;
      turn.apply(event);
      if (!known && turn.id && created) created(turn.id);
      showControls(turn);
      scroll();
    }
  } catch (error) {
    if (error.name !== "AbortError") {
      if (error.needsKey) askForKey(error.message);
      else turn.showError({ code: error.status ? `HTTP ${error.status}` : "connection", message: error.message });
    }
  } finally {
    turn.controller = null;
    setBusy(false);
  }
  await afterStream(turn, controller.signal.aborted);
}

async function afterStream(turn, detached) {
  if (isRunning(turn.status) && !detached && turn.id && (turn.reconnects || 0) < RECONNECTS) {
    turn.reconnects = (turn.reconnects || 0) + 1; // the connection dropped: go on from the last event seen
    await new Promise((resume) => setTimeout(resume, 500 * turn.reconnects));
    await attach(turn, false);
    return;
  }
  showControls(turn);
  if (turn.status === "requires_action" && turn.id === previous) {
    turn.askForResults((results) => send(results, "function results"));
  }
}

/** Follows a running interaction's stream: from its start (a page that shows nothing of it yet), or on after
 * the last event this page has seen (a stream that was cut or left). */
async function attach(turn, fromStart) {
  if (fromStart) turn.reset();
  turn.replayed = true;
  const after = fromStart ? null : turn.lastEventId;
  await stream(turn, (signal) => api.follow(turn.id, after, signal));
}

function showControls(turn) {
  const buttons = [];
  const running = isRunning(turn.status) || (!turn.status && turn.controller);
  if (running) {
    buttons.push(button("Stop", "stop", async () => {
      if (!turn.id) return turn.controller?.abort();
      try {
        const stopped = await api.cancel(turn.id);
        if (!turn.controller) turn.setInteraction(stopped);
      } catch (error) {
        notice(error.message);
      }
    }));
  }
  if (running && turn.id && turn.background && turn.controller) {
    buttons.push(button("Detach", "detach", () => turn.controller?.abort()));
  }
  if (running && turn.id && !turn.controller) {
    buttons.push(button("Re-attach", "reattach", () => attach(turn, false)));
  }
  turn.controls.replaceChildren(...buttons);
}

function button(label, name, onClick) {
  return el("button", { type: "button", class: name, onclick: onClick }, label);
}

/** Shows a stored conversation: every turn of its chain, oldest first; follows its last turn if it runs. */
async function reopen(conversation) {
  notice("");
  timeline.replaceChildren();
  const chain = [];
  let id = conversation.ids.at(-1);
  try {
    while (id && chain.length < 100) {
      const interaction = await api.interaction(id);
      chain.unshift(interaction);
      id = interaction.previous_interaction_id;
    }
  } catch (error) {
    if (error.needsKey) return askForKey(error.message);
    if (!chain.length) return notice(`${conversation.ids.at(-1)}: ${error.message}`);
    timeline.append(el("p", { class: "gap" }, `Earlier turns are gone (${id}: ${error.message}).`));
  }
  let last = null;
  for (const interaction of chain) {
    last = new Turn({ target: interaction.agent ? `agent ${interaction.agent}` : `model ${interaction.model}` });
    last.background = true;
    last.fill(interaction);
    timeline.append(last.root);
    showControls(last);
  }
  settings.follow(chain.at(-1));
  setPrevious(last.id);
  timeline.scrollTop = timeline.scrollHeight;
  await (isRunning(last.status) ? attach(last, true) : afterStream(last, false));
}

async function remove(conversation) {
  for (const id of conversation.ids) {
    try {
      await api.remove(id);
    } catch (error) {
      if (error.status !== 404) return notice(`${id}: ${error.message}`);
    }
  }
  history.remove(conversation.ids[0]);
  if (conversation.ids.includes(previous)) newConversation();
  renderHistory();
}

function renderHistory() {
  const items = history.all().map((conversation) => {
    const when = new Date(conversation.updated).toLocaleString();
    const open = el("button", { type: "button", class: "open", title: conversation.ids.at(-1),
      onclick: () => reopen(conversation) }, el("span", { class: "title" }, conversation.title || "(untitled)"),
      el("span", { class: "meta" }, `${conversation.target || ""} · ${conversation.ids.length} turn(s) · ${when}`));
    const drop = el("button", { type: "button", class: "delete", title: "delete from the server",
      "aria-label": `delete ${conversation.title}`, onclick: () => remove(conversation) }, "×");
    return el("li", { "data-id": conversation.ids.at(-1) }, open, drop);
  });
  $("history").replaceChildren(...items);
}

function newConversation() {
  setPrevious(null);
  timeline.replaceChildren();
  notice("");
}

function askForKey(message) {
  notice(`${message} Enter the server's API key above.`);
  $("api-key").focus();
}

async function loadModels() {
  try {
    await settings.loadModels();
    notice("");
  } catch (error) {
    if (error.needsKey) askForKey(error.message);
    else notice(`Could not list the models: ${error.message}`);
  }
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  api.setKey($("api-key").value);
  loadModels();
});
$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || busy) return;
  $("prompt").value = "";
  send(text, text.slice(0, 80));
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("composer").requestSubmit();
});
$("new-conversation").addEventListener("click", newConversation);

$("api-key").value = api.key;
renderHistory();
loadModels();
