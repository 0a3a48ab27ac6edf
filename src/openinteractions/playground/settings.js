// The settings panel: what to talk to (a served model, or an agent), the system instruction, tools, generation
// config and thinking summaries, turned into the body of a create request.

const $ = (id) => document.getElementById(id);
const SERVER_TOOLS = ["google_search", "code_execution", "url_context"];

export class Settings {
  constructor(api) {
    this.api = api;
  }

  async loadModels() {
    const chosen = $("model").value;
    const { models = [] } = await this.api.models();
    const options = models.map((model) => {
      const name = model.name.replace(/^models\//, "");
      const option = new Option(model.testDouble ? `${name} (test double)` : name, name);
      option.title = model.description || "";
      return option;
    });
    $("model").replaceChildren(...options);
    if (chosen && models.some((m) => m.name === `models/${chosen}`)) $("model").value = chosen;
  }

  isAgent() {
    return $("target-agent").checked;
  }

  targetLabel() {
    return this.isAgent() ? `agent ${$("agent").value.trim()}` : `model ${$("model").value}`;
  }

  /** The create request's body for ``input`` (stream is added by the client); throws on a malformed field. */
  request(input) {
    const body = { input };
    const summaries = $("thinking-summaries").checked;
    if (this.isAgent()) {
      const agent = $("agent").value.trim();
      if (!agent) throw new Error("Name an agent.");
      // Agents run in the background (the API requires it): the page follows their stream and can leave it.
      Object.assign(body, { agent, background: true,
        agent_config: { type: "deep-research", thinking_summaries: summaries ? "auto" : "none" } });
    } else {
      if (!$("model").value) throw new Error("No model to talk to: the server lists none (is the API key right?).");
      body.model = $("model").value;
      const config = parseJson($("generation-config").value, "generation_config", {});
      if (typeof config !== "object" || Array.isArray(config)) throw new Error("generation_config is a JSON object.");
      if (summaries) config.thinking_summaries = "auto";
      if (Object.keys(config).length) body.generation_config = config;
      if ($("background").checked) body.background = true;
    }
    const system = $("system").value.trim();
    if (system) body.system_instruction = system;
    const tools = this.tools();
    if (tools.length) body.tools = tools;
    return body;
  }

  tools() {
    const tools = SERVER_TOOLS.filter((name) => $(`tool-${name}`).checked).map((type) => ({ type }));
    let functions = parseJson($("functions").value, "Function declarations", []);
    if (!Array.isArray(functions)) functions = [functions];
    for (const declaration of functions) {
      if (typeof declaration !== "object" || !declaration || !declaration.name) {
        throw new Error("Each function declaration is an object with a name.");
      }
      tools.push({ type: "function", ...declaration });
    }
    return tools;
  }

  /** Shows a reopened interaction's model or agent as the one the next turn goes to. */
  follow(interaction) {
    if (!interaction) return;
    if (interaction.agent) {
      $("target-agent").checked = true;
      $("agent").value = interaction.agent;
    } else if (interaction.model && [...$("model").options].some((o) => o.value === interaction.model)) {
      $("target-model").checked = true;
      $("model").value = interaction.model;
    }
  }
}

function parseJson(text, what, empty) {
  if (!text.trim()) return empty;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${what} is not valid JSON: ${error.message}`);
  }
}
