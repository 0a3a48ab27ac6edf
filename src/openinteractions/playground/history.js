// The conversations this browser started. The API has no list of interactions, so the page keeps the ids it
// created in localStorage: per conversation, every interaction of it (the last one continues it).

const SLOT = "openinteractions.playground.conversations";
const LIMIT = 200;

export class History {
  constructor(storage = localStorage) {
    this.storage = storage;
  }

  all() {
    try {
      const list = JSON.parse(this.storage.getItem(SLOT) || "[]");
      return Array.isArray(list) ? list : [];
    } catch {
      return [];
    }
  }

  save(list) {
    this.storage.setItem(SLOT, JSON.stringify(list.slice(0, LIMIT)));
  }

  /** Records interaction ``id`` as the newest turn of the conversation whose last turn was ``previous``. */
  add(id, previous, title, target) {
    const list = this.all();
    const at = previous ? list.findIndex((c) => c.ids.includes(previous)) : -1;
    const conversation = at >= 0 ? list.splice(at, 1)[0] : { title, target, ids: [] };
    if (!conversation.ids.includes(id)) conversation.ids.push(id);
    conversation.updated = Date.now();
    list.unshift(conversation);
    this.save(list);
    return conversation;
  }

  find(id) {
    return this.all().find((c) => c.ids.includes(id)) || null;
  }

  remove(id) {
    this.save(this.all().filter((c) => !c.ids.includes(id)));
  }
}
