// The Wharf console: one ES module, no dependencies, no build step
// (docs/console.md). It talks to the REST API under ../api/v1 with the login
// token of POST /login, kept in sessionStorage (never in a URL), and builds
// every element with the DOM API (never HTML strings). Pages are chosen by
// the URL's fragment: #/repositories, #/repositories/ID, #/tasks/ID, ...

const TOKEN_KEY = 'wharf.token';
const API = new URL('../api/v1', document.baseURI).pathname;
const main = document.getElementById('main');
const statusRegion = document.getElementById('status');

/** The logged-in user (`GET /me`), or null. */
let me = null;
/** Bumped on every page change: pollers of an older page stop. */
let generation = 0;

// ------------------------------------------------------------------ API --

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  /** What the user reads: the status, the server's code and message. */
  toString() {
    return `${this.status} ${this.code}: ${this.message}`;
  }
}

/** Call the API; resolves to the JSON answer, rejects with an ApiError. */
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  // No cookies, and no browser login prompt on a 401: the token is explicit.
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(0, 'unreachable', `the server did not answer (${e.message}); is it running?`);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const err = (data && data.error) || {};
    const error = new ApiError(response.status, err.code || response.statusText || 'error',
      err.message || text || 'no details');
    if (response.status === 401 && path !== '/login') {
      sessionStorage.removeItem(TOKEN_KEY);
      me = null;
      showLogin('Your session has ended; log in again.');
    }
    throw error;
  }
  return data;
}

/** Every item of a paged list (`{items, next}`), up to `max`. */
async function all(path, max = 5000) {
  const items = [];
  let after = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api('GET', `${path}${sep}limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    items.push(...page.items);
    after = page.next;
  } while (after && items.length < max);
  return items;
}

/** Whether the user may do `op` on `resource` (what the server checks too). */
function can(op, resource) {
  if (!me) return false;
  if (me.super_user) return true;
  const path = resource.endsWith('/') ? resource : `${resource}/`;
  return me.permissions.some((p) => path.startsWith(p.resource) && p.operations.includes(op));
}

/** Whether the user holds `op` on some repository (a copy's target, say). */
function canOnSomeRepository(op) {
  if (!me) return false;
  return me.super_user || me.permissions.some(
    (p) => (p.resource === '/' || p.resource.startsWith('/repositories/')) && p.operations.includes(op));
}

// ------------------------------------------------------------ elements --

/** An element: h('a', {href: '#/x'}, 'text', child, ...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** Replace an element's children (null and false are left out). */
function put(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

function link(href, ...children) {
  return h('a', { href }, ...children);
}

/** A table with a caption, header cells and rows of cells. */
function table(caption, headers, rows, attrs = {}) {
  const head = h('tr', {}, headers.map((t) => {
    const num = t.startsWith('#');
    return h('th', { scope: 'col', class: num ? 'num' : null }, num ? t.slice(1) : t);
  }));
  const body = h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c, i) =>
    h('td', { class: headers[i] && headers[i].startsWith('#') ? 'num' : null }, c)))));
  return h('div', { class: 'table-wrap' },
    h('table', attrs, h('caption', {}, caption), h('thead', {}, head), body));
}

function alertBox(error) {
  return h('div', { class: 'alert', role: 'alert' }, String(error));
}

function announce(text) {
  statusRegion.textContent = '';
  setTimeout(() => { statusRegion.textContent = text; }, 50);
}

function section(title, ...children) {
  return h('section', { 'aria-labelledby': slug(title) }, h('h2', { id: slug(title) }, title), ...children);
}

function slug(text) {
  return `s-${text.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
}

/** Thrown by `render` for a page the user has left meanwhile. */
class Stale extends Error {}

/**
 * Replace the page's content and title; focus goes to the heading. `g` is
 * the generation the page started in: a page that finished loading after
 * the user went elsewhere does not replace the newer one.
 */
function render(g, title, ...children) {
  if (g !== generation) throw new Stale();
  document.title = `${title} · Wharf`;
  main.replaceChildren(...children.flat().filter(Boolean));
  const heading = main.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

// --------------------------------------------------------------- format --

function bytes(n) {
  if (n === undefined || n === null) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

function short(digest) {
  return digest && digest.startsWith('sha256:') ? digest.slice(7, 19) : digest;
}

function notes(obj) {
  return Object.entries(obj || {}).map(([k, v]) => h('span', { class: 'chip' }, `${k}=${v}`));
}

function stateLabel(state) {
  return h('span', { class: `state-${state}` }, state);
}

/** A task's progress in percent (100 once finished), or null if unknown. */
function percent(task) {
  if (task.state === 'finished') return 100;
  const p = task.progress || {};
  if (p.bytes_total > 0) return Math.min(100, Math.floor((100 * p.bytes_done) / p.bytes_total));
  if (p.items_total > 0) return Math.min(100, Math.floor((100 * p.items_done) / p.items_total));
  return null;
}

function progressCell(task) {
  const pc = percent(task);
  const label = pc === null ? (task.state === 'running' ? 'running' : '–') : `${pc} %`;
  const bar = h('progress', { max: 100, 'aria-label': `task ${short(task.id)} progress` });
  if (pc !== null) bar.value = pc;
  return h('span', { class: 'progress' }, bar, h('span', { class: 'percent' }, label));
}

function taskRepos(task) {
  return (task.locks || []).filter((l) => l.startsWith('repository:')).map((l) => l.slice(11));
}

const FINAL = ['finished', 'error', 'canceled'];

/** A command with a button that copies it. */
function copyable(text, label) {
  const code = h('code', {}, text);
  const button = h('button', {
    type: 'button',
    class: 'secondary',
    'aria-label': `Copy ${label}`,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(text);
      } catch {
        // Not a secure context: select the text for Ctrl+C instead.
        const range = document.createRange();
        range.selectNodeContents(code);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        announce('Selected: press Ctrl+C to copy');
        return;
      }
      button.textContent = 'Copied';
      announce(`Copied ${label}`);
      setTimeout(() => { button.textContent = 'Copy'; }, 2000);
    },
  }, 'Copy');
  return h('div', { class: 'pull' }, code, button);
}

/** Ask before something that cannot be undone; resolves to true or false. */
function confirmDialog(title, text, confirmLabel) {
  return new Promise((resolve) => {
    const cancel = h('button', { type: 'button', class: 'secondary', id: 'confirm-cancel' }, 'Cancel');
    const ok = h('button', { type: 'button', class: 'danger', id: 'confirm-ok' }, confirmLabel);
    const dialog = h('dialog', { 'aria-labelledby': 'confirm-title' },
      h('h2', { id: 'confirm-title' }, title), h('p', {}, text),
      h('div', { class: 'actions' }, cancel, ok));
    const done = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
    cancel.addEventListener('click', () => done(false));
    ok.addEventListener('click', () => done(true));
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** Poll `step` every `ms` while the page is the same; `step` returns true to stop. */
function poll(ms, step) {
  const mine = generation;
  const tick = async () => {
    if (mine !== generation) return;
    let stop = false;
    try { stop = await step(); } catch (e) { stop = e instanceof ApiError && e.status === 401; }
    if (!stop && mine === generation) setTimeout(tick, ms);
  };
  tick();
}

// ---------------------------------------------------------------- login --

function showLogin(message) {
  generation += 1;
  document.getElementById('nav').hidden = true;
  document.getElementById('session').hidden = true;
  const error = h('div', { id: 'login-error' });
  const form = h('form', { class: 'panel', id: 'login-form', 'aria-describedby': 'login-help' },
    h('div', { class: 'field' },
      h('label', { for: 'login' }, 'Login'),
      h('input', { id: 'login', name: 'login', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' })),
    h('div', { class: 'field' },
      h('label', { for: 'password' }, 'Password'),
      h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    h('button', { type: 'submit', id: 'login-submit' }, 'Log in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.replaceChildren();
    const login = form.elements.login.value.trim();
    const password = form.elements.password.value;
    try {
      const token = await loginWith(login, password);
      sessionStorage.setItem(TOKEN_KEY, token);
      await start();
    } catch (err) {
      error.replaceChildren(alertBox(err.status === 401
        ? 'Wrong login or password (local and directory accounts are both checked).'
        : err));
      form.elements.password.select();
    }
  });
  render(generation, 'Log in',
    h('h1', {}, 'Log in to Wharf'),
    message ? h('div', { class: 'notice', role: 'status' }, message) : null,
    h('p', { id: 'login-help', class: 'muted' },
      'Local and directory (LDAP) accounts both work here; it is the login of the wharf CLI.'),
    error, form);
  form.elements.login.focus();
}

/** POST /login with HTTP basic; resolves to the token. */
async function loginWith(login, password) {
  const raw = new TextEncoder().encode(`${login}:${password}`);
  const basic = btoa(String.fromCharCode(...raw));
  const response = await fetch(`${API}/login`, {
    method: 'POST',
    headers: { Authorization: `Basic ${basic}`, Accept: 'application/json' },
    cache: 'no-store',
    // A wrong password gets 401 with a Basic challenge: without this the
    // browser would open its own login dialog instead of answering here.
    credentials: 'omit',
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(response.status, err.code || 'error', err.message || response.statusText);
  }
  return data.token;
}

async function logout() {
  try { await api('POST', '/logout'); } catch { /* the token is dropped anyway */ }
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  history.replaceState(null, '', '#/');
  showLogin('You are logged out.');
}

// ----------------------------------------------------------- repositories --

async function repositoriesPage(params) {
  const g = generation;
  const status = await api('GET', '/status');
  const types = [...new Set((status.plugins || []).flatMap((p) => p.content_types.map((c) => c.name)))].sort();
  const search = h('input', { id: 'repo-search', type: 'search', value: params.get('q') || '', 'aria-describedby': 'repo-search-hint' });
  const type = h('select', { id: 'repo-type' }, h('option', { value: '' }, 'any'),
    types.map((t) => h('option', { value: t, selected: params.get('type') === t }, t)));
  const published = h('select', { id: 'repo-published' },
    h('option', { value: '' }, 'any'), h('option', { value: 'yes' }, 'published'),
    h('option', { value: 'no' }, 'not published'));
  published.value = params.get('published') || '';
  const filters = h('form', { class: 'panel filters', role: 'search', onsubmit: (e) => e.preventDefault() },
    h('div', { class: 'field' }, h('label', { for: 'repo-search' }, 'Search by id or note'), search,
      h('span', { id: 'repo-search-hint', class: 'hint' }, 'e.g. app, team=payments, payments')),
    h('div', { class: 'field' }, h('label', { for: 'repo-type' }, 'Content type'), type),
    h('div', { class: 'field' }, h('label', { for: 'repo-published' }, 'Publication'), published));
  const results = h('div', { id: 'repo-results' }, h('p', {}, 'Loading…'));
  render(g, 'Repositories',
    h('h1', {}, 'Repositories'),
    can('create', '/repositories') ? h('div', { class: 'actions' },
      h('a', { class: 'button', href: '#/new-repository', id: 'new-repository' }, 'New repository')) : null,
    filters, results);

  let repos = [];
  const details = new Map();
  const show = () => {
    const terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const rows = repos.filter((r) => {
      if (type.value && r.content_type !== type.value) return false;
      const d = details.get(r.id);
      if (published.value && d) {
        const isPublished = d.publications.length > 0;
        if ((published.value === 'yes') !== isPublished) return false;
      }
      const haystack = [r.id, r.display_name, r.description,
        ...Object.entries(r.notes || {}).map(([k, v]) => `${k}=${v}`)].join('\n').toLowerCase();
      return terms.every((t) => haystack.includes(t));
    });
    const q = new URLSearchParams();
    if (search.value) q.set('q', search.value);
    if (type.value) q.set('type', type.value);
    if (published.value) q.set('published', published.value);
    const hash = `#/repositories${q.toString() ? `?${q}` : ''}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
    results.replaceChildren(
      h('p', { class: 'muted', id: 'repo-count', role: 'status' }, `${rows.length} of ${repos.length} repositories`),
      table('Repositories', ['Id', 'Content type', 'Notes', 'Published as', '#Latest version'],
        rows.map((r) => {
          const d = details.get(r.id);
          const pubs = d ? (d.publications.length
            ? d.publications.map((p) => h('span', { class: 'chip' }, `${p.name}${p.version !== null && p.version !== undefined ? ` (v${p.version})` : ''}`))
            : h('span', { class: 'muted' }, 'not published')) : '…';
          return [link(`#/repositories/${encodeURIComponent(r.id)}`, r.id), r.content_type, notes(r.notes), pubs,
            d && d.latest_version !== null && d.latest_version !== undefined ? String(d.latest_version) : ''];
        }), { id: 'repo-table' }));
  };
  for (const el of [search, type, published]) el.addEventListener(el === search ? 'input' : 'change', show);
  try {
    repos = await all('/repositories');
  } catch (e) {
    results.replaceChildren(alertBox(e));
    return;
  }
  show();
  // Publication state and latest version come with each repository's
  // details, fetched a few at a time.
  const mine = generation;
  const queue = repos.slice(0, 500);
  const worker = async () => {
    while (queue.length && mine === generation) {
      const r = queue.shift();
      try { details.set(r.id, await api('GET', `/repositories/${encodeURIComponent(r.id)}`)); } catch { /* shown as … */ }
    }
  };
  await Promise.all(Array.from({ length: 6 }, worker));
  if (mine === generation) show();
}

async function newRepositoryPage() {
  const g = generation;
  const status = await api('GET', '/status');
  const types = [...new Set((status.plugins || []).flatMap((p) => p.content_types.map((c) => c.name)))].sort();
  const error = h('div');
  const docker = h('fieldset', { id: 'docker-settings' }, h('legend', {}, 'Docker settings'),
    field('upstream_name', 'Upstream name', h('input', { id: 'upstream_name', name: 'upstream_name', placeholder: 'library/busybox' }),
      'The image to mirror from the feed.'),
    field('registry_name', 'Registry name', h('input', { id: 'registry_name', name: 'registry_name', placeholder: 'team/app' }),
      'The name clients pull once published; the id when empty.'));
  const typeSelect = h('select', { id: 'content_type', name: 'content_type', required: true },
    types.map((t) => h('option', { value: t }, t)));
  const form = h('form', { class: 'panel', id: 'create-form' },
    field('repo_id', 'Id', h('input', { id: 'repo_id', name: 'id', required: true, autocapitalize: 'none', spellcheck: 'false' }),
      'Letters, digits, - _ . ; unique.'),
    field('content_type', 'Content type', typeSelect),
    field('display_name', 'Display name', h('input', { id: 'display_name', name: 'display_name' })),
    field('description', 'Description', h('input', { id: 'description', name: 'description' })),
    field('repo_notes', 'Notes', h('textarea', { id: 'repo_notes', name: 'notes', placeholder: 'team=payments' }),
      'One key=value a line; searchable in the list.'),
    field('feed', 'Feed URL', h('input', { id: 'feed', name: 'feed', type: 'url', autocapitalize: 'none', spellcheck: 'false' }),
      'The remote registry a sync fetches from (scheme and host, e.g. registry-1.docker.io over HTTPS); empty for a repository fed by uploads or pushes.'),
    docker,
    h('button', { type: 'submit', id: 'create-submit' }, 'Create repository'));
  const sync = () => { docker.hidden = typeSelect.value !== 'docker'; };
  typeSelect.addEventListener('change', sync);
  sync();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.replaceChildren();
    const f = form.elements;
    const body = { id: f.id.value.trim(), content_type: f.content_type.value, notes: {} };
    if (f.display_name.value.trim()) body.display_name = f.display_name.value.trim();
    if (f.description.value.trim()) body.description = f.description.value.trim();
    for (const line of f.notes.value.split('\n').map((l) => l.trim()).filter(Boolean)) {
      const at = line.indexOf('=');
      if (at < 1) {
        error.replaceChildren(alertBox(`The note "${line}" is not key=value.`));
        f.notes.focus();
        return;
      }
      body.notes[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    const importer = {};
    if (f.feed.value.trim()) importer.feed = f.feed.value.trim();
    if (body.content_type === 'docker') {
      if (f.upstream_name.value.trim()) importer.upstream_name = f.upstream_name.value.trim();
      if (f.registry_name.value.trim()) body.distributor_config = { repo_registry_id: f.registry_name.value.trim() };
    }
    if (Object.keys(importer).length) body.importer_config = importer;
    try {
      const repo = await api('POST', '/repositories', body);
      announce(`Created ${repo.id}`);
      location.hash = `#/repositories/${encodeURIComponent(repo.id)}`;
    } catch (err) {
      error.replaceChildren(alertBox(err));
    }
  });
  render(g, 'New repository', h('h1', {}, 'New repository'), error, form);
}

function field(id, label, input, hint) {
  if (hint) input.setAttribute('aria-describedby', `${id}-hint`);
  return h('div', { class: 'field' }, h('label', { for: id }, label), input,
    hint ? h('span', { class: 'hint', id: `${id}-hint` }, hint) : null);
}

/** A repository's units of every type: {tag: [...], manifest: [...], ...}. */
async function unitsOf(id, counts) {
  const out = {};
  await Promise.all(Object.keys(counts || {}).map(async (t) => {
    out[t] = await all(`/repositories/${encodeURIComponent(id)}/content?type=${encodeURIComponent(t)}`);
  }));
  return out;
}

/** Docker units seen as images: tags, manifests by digest, blob sizes. */
function dockerView(units) {
  const manifests = new Map((units.manifest || []).map((u) => [u.key, u.metadata]));
  const blobs = new Map((units.blob || []).map((u) => [u.key, u.metadata]));
  const tags = (units.tag || []).map((u) => ({ name: u.metadata.name, digest: u.metadata.manifest }))
    .sort((a, b) => a.name.localeCompare(b.name));
  const imageSize = (m) => (m ? (m.layers || []).reduce((s, l) => s + ((blobs.get(l) || {}).size || 0), 0) : 0);
  const platform = (m) => (m && m.platform ? [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join('/') : '');
  return { manifests, blobs, tags, imageSize, platform };
}

function publicationFor(repo) {
  return (repo.publications || [])[0] || null;
}

/** `docker pull HOST/NAME:TAG` (HOST: the one this page came from). */
function pullCommand(repo, reference) {
  const pub = publicationFor(repo);
  if (!pub) return null;
  const sep = reference.startsWith('sha256:') ? '@' : ':';
  return `docker pull ${location.host}/${pub.name}${sep}${reference}`;
}

async function repositoryPage(id) {
  const g = generation;
  const path = `/repositories/${encodeURIComponent(id)}`;
  let repo;
  try {
    repo = await api('GET', path);
  } catch (e) {
    render(g, id, h('h1', {}, id), alertBox(e), link('#/repositories', 'All repositories'));
    return;
  }
  const units = await unitsOf(id, repo.content_counts);
  const isDocker = repo.content_type === 'docker';
  const dv = dockerView(units);
  const pub = publicationFor(repo);
  const feed = (repo.importer_config || {}).feed;

  const message = h('div', { id: 'action-message' });
  const actions = h('div', { class: 'actions', id: 'repo-actions' });
  const mayExecute = can('execute', path);
  if (mayExecute && feed) {
    actions.append(h('button', { type: 'button', id: 'sync', onclick: () => startTask(message, `${path}/sync`, {}, true) }, 'Sync'));
  }
  if (mayExecute) {
    actions.append(h('button', { type: 'button', id: 'publish', onclick: () => startTask(message, `${path}/publish`, {}, false) },
      `Publish version ${repo.latest_version ?? ''}`.trim()));
  }
  if (can('delete', path)) {
    actions.append(h('button', {
      type: 'button',
      class: 'danger',
      id: 'delete-repository',
      onclick: async () => {
        const sure = await confirmDialog(`Delete ${id}?`,
          `The repository ${id}, its versions and publications go; clients can no longer pull from it. This cannot be undone.`,
          'Delete repository');
        if (!sure) { announce('Not deleted'); return; }
        startTask(message, path, undefined, true, 'DELETE');
      },
    }, 'Delete repository'));
  }

  const facts = h('dl', { class: 'facts' },
    h('dt', {}, 'Content type'), h('dd', {}, repo.content_type),
    repo.description ? [h('dt', {}, 'Description'), h('dd', {}, repo.description)] : null,
    h('dt', {}, 'Notes'), h('dd', {}, Object.keys(repo.notes || {}).length ? notes(repo.notes) : h('span', { class: 'muted' }, 'none')),
    feed ? [h('dt', {}, 'Feed'), h('dd', {}, feed, repo.importer_config.upstream_name ? ` (${repo.importer_config.upstream_name})` : '')] : null,
    h('dt', {}, 'Latest version'), h('dd', {}, String(repo.latest_version ?? '–')),
    h('dt', {}, 'Published'), h('dd', { id: 'published' }, pub
      ? `${pub.name}, version ${pub.version ?? '?'} (${new Date(pub.published_at).toLocaleString()})`
      : 'not published: clients see nothing yet'),
    h('dt', {}, 'Content'), h('dd', {}, Object.entries(repo.content_counts || {}).map(([k, v]) => `${v} ${k}`).join(', ') || 'empty'));

  const first = dv.tags.find((t) => t.name === 'latest') || dv.tags[0];
  const pull = isDocker && first && pullCommand(repo, first.name);

  const contentSections = [];
  if (isDocker) {
    contentSections.push(section('Tags', dv.tags.length ? table('Tags and the image each names',
      ['Tag', 'Manifest', 'Platforms', '#Size'],
      dv.tags.map((t) => {
        const m = dv.manifests.get(t.digest);
        const isIndex = m && (m.manifests || []).length > 0;
        const platforms = isIndex ? m.manifests.map((d) => dv.platform(dv.manifests.get(d)) || short(d)).join(', ') : (dv.platform(m) || '–');
        const size = isIndex ? '' : bytes(dv.imageSize(m));
        return [link(`#/repositories/${encodeURIComponent(id)}/images/${encodeURIComponent(t.digest)}`, t.name),
          h('span', { class: 'mono', title: t.digest }, short(t.digest)), platforms, size];
      }), { id: 'tags-table' }) : h('p', { class: 'muted' }, 'No tags.')));
    contentSections.push(section('Manifests', table('Manifests (images and indexes)',
      ['Digest', 'Kind', 'Platform', '#Layers', '#Size'],
      [...dv.manifests.entries()].map(([digest, m]) => {
        const isIndex = (m.manifests || []).length > 0;
        return [link(`#/repositories/${encodeURIComponent(id)}/images/${encodeURIComponent(digest)}`, h('span', { class: 'mono' }, short(digest))),
          isIndex ? `index of ${m.manifests.length}` : 'image', dv.platform(m),
          isIndex ? '' : String((m.layers || []).length), isIndex ? '' : bytes(dv.imageSize(m))];
      }), { id: 'manifests-table' })));
    if (mayCopyFrom(path) && dv.tags.length) contentSections.push(copyForm(id, dv.tags, message));
  } else {
    for (const [type, list] of Object.entries(units)) {
      contentSections.push(section(`Content: ${type}`, table(`${list.length} ${type} units`, ['Key', 'Details'],
        list.slice(0, 500).map((u) => [h('span', { class: 'mono' }, u.key), h('span', { class: 'mono' }, JSON.stringify(u.metadata))]))));
    }
  }

  const versions = h('div', {}, h('p', {}, 'Loading…'));
  const tasks = h('div', {}, h('p', {}, 'Loading…'));
  render(g, id,
    h('p', {}, link('#/repositories', '← All repositories')),
    h('h1', {}, repo.display_name && repo.display_name !== id ? `${repo.display_name} (${id})` : id),
    facts,
    pull ? [h('h2', { id: 'pull-heading' }, 'Pull'), copyable(pull, 'the pull command')] : null,
    actions, message,
    contentSections,
    section('Versions and publications', versions),
    section('Recent tasks', tasks));

  api('GET', `${path}/versions?limit=1000`).then((page) => {
    const published = new Set((repo.publications || []).map((p) => p.version));
    versions.replaceChildren(table('Versions, newest first', ['#Version', 'Made by', 'Changes', 'Content', 'When', 'Task'],
      [...page.items].reverse().slice(0, 50).map((v) => [
        published.has(v.number) ? h('span', {}, String(v.number), ' ', h('span', { class: 'chip' }, 'published')) : String(v.number),
        v.cause, changes(v), Object.entries(v.content).map(([k, n]) => `${n} ${k}`).join(', '),
        when(v.created_at), v.task ? link(`#/tasks/${v.task}`, short(v.task)) : '']), { id: 'versions-table' }),
    (repo.publications || []).length ? table('Publications', ['Name', '#Version', 'Published'],
      repo.publications.map((p) => [p.name, String(p.version ?? ''), when(p.published_at)])) : h('p', { class: 'muted' }, 'No publication.'));
  }).catch((e) => versions.replaceChildren(alertBox(e)));

  if (can('read', '/tasks')) {
    poll(2000, async () => {
      const list = await api('GET', `/tasks?repository=${encodeURIComponent(id)}&limit=10`);
      tasks.replaceChildren(taskTable(list, 'Recent tasks on this repository'));
      return false;
    });
  } else {
    tasks.replaceChildren(h('p', { class: 'muted' }, 'You may not list tasks.'));
  }
}

function changes(v) {
  const parts = [];
  for (const [k, n] of Object.entries(v.added || {})) parts.push(`+${n} ${k}`);
  for (const [k, n] of Object.entries(v.removed || {})) parts.push(`−${n} ${k}`);
  return parts.join(', ');
}

function mayCopyFrom(path) {
  return can('read', path) && canOnSomeRepository('execute');
}

/** Copy a tag of this repository into another (POST /repositories/TO/copy). */
function copyForm(from, tags, message) {
  const form = h('form', { class: 'panel', id: 'copy-form' },
    h('div', { class: 'filters' },
      field('copy-tag', 'Tag', h('select', { id: 'copy-tag', name: 'tag' }, tags.map((t) => h('option', { value: t.name }, t.name)))),
      field('copy-to', 'To repository', h('input', { id: 'copy-to', name: 'to', required: true, list: 'repo-ids', autocapitalize: 'none', spellcheck: 'false' })),
      h('div', { class: 'field' }, h('button', { type: 'submit', id: 'copy-submit' }, 'Copy tag'))),
    h('datalist', { id: 'repo-ids' }));
  if (can('read', '/repositories')) {
    all('/repositories').then((repos) => form.querySelector('#repo-ids').replaceChildren(
      ...repos.filter((r) => r.id !== from).map((r) => h('option', { value: r.id })))).catch(() => {});
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const to = form.elements.to.value.trim();
    const tag = form.elements.tag.value;
    startTask(message, `/repositories/${encodeURIComponent(to)}/copy`, { from, references: [tag] }, false);
  });
  return section('Copy a tag', h('p', { class: 'hint' }, 'Copies the tag, with the manifests and layers it needs, into another repository (as a new version of it; publish it there to serve it).'), form);
}

/**
 * Start a task (202) and follow it in `where`; with `open`, go to its page.
 * A refusal (403 ...) is shown as the server gave it.
 */
async function startTask(where, path, body, open, method = 'POST') {
  where.replaceChildren(h('p', { role: 'status' }, 'Starting…'));
  let task;
  try {
    task = await api(method, path, body);
  } catch (e) {
    where.replaceChildren(alertBox(e));
    return;
  }
  if (open) {
    location.hash = `#/tasks/${task.id}`;
    return;
  }
  const line = h('p', { class: 'notice', id: 'task-notice', role: 'status' });
  where.replaceChildren(line);
  poll(500, async () => {
    const t = await api('GET', `/tasks/${task.id}`);
    line.replaceChildren(`${t.kind} task `, link(`#/tasks/${t.id}`, short(t.id)), ': ', stateLabel(t.state),
      t.state === 'error' && t.error ? ` — ${t.error.message}` : '',
      t.state === 'finished' && t.result && t.result.message ? ` — ${t.result.message}` : '');
    if (t.state === 'error') line.className = 'alert';
    return FINAL.includes(t.state);
  });
}

async function imagePage(id, digest) {
  const g = generation;
  const path = `/repositories/${encodeURIComponent(id)}`;
  const repo = await api('GET', path);
  const units = await unitsOf(id, repo.content_counts);
  const dv = dockerView(units);
  const m = dv.manifests.get(digest);
  const back = h('p', {}, link(`#/repositories/${encodeURIComponent(id)}`, `← ${id}`));
  if (!m) {
    render(g, short(digest), back, h('h1', {}, short(digest)), alertBox(`404 not-found: ${id} holds no manifest ${digest}`));
    return;
  }
  const tags = dv.tags.filter((t) => t.digest === digest).map((t) => t.name);
  const isIndex = (m.manifests || []).length > 0;
  const title = `${id}${tags.length ? `:${tags[0]}` : `@${short(digest)}`}`;
  const pull = pullCommand(repo, tags[0] || digest);
  const parents = [...dv.manifests.entries()].filter(([, p]) => (p.manifests || []).includes(digest)).map(([d]) => d);
  const body = [];
  if (isIndex) {
    body.push(section('Platforms', table('The images of this index, one per platform', ['Platform', 'Manifest', '#Layers', '#Size'],
      m.manifests.map((d) => {
        const child = dv.manifests.get(d);
        return [dv.platform(child) || 'unknown',
          link(`#/repositories/${encodeURIComponent(id)}/images/${encodeURIComponent(d)}`, h('span', { class: 'mono' }, short(d))),
          child ? String((child.layers || []).length) : '?', child ? bytes(dv.imageSize(child)) : '?'];
      }), { id: 'platforms-table' })));
  } else {
    const layers = (m.layers || []).map((l, i) => [String(i + 1), h('span', { class: 'mono digest' }, l),
      ((dv.blobs.get(l) || {}).media_type || '').replace('application/vnd.', ''), bytes((dv.blobs.get(l) || {}).size)]);
    body.push(section('Layers', table(`${layers.length} layers, ${bytes(dv.imageSize(m))} in all`, ['#Layer', 'Digest', 'Media type', '#Size'], layers, { id: 'layers-table' })));
  }
  render(g, title, back, h('h1', {}, title),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Digest'), h('dd', { class: 'mono digest', id: 'image-digest' }, digest),
      h('dt', {}, 'Kind'), h('dd', {}, isIndex ? `index of ${m.manifests.length} images` : 'image'),
      h('dt', {}, 'Media type'), h('dd', {}, m.media_type || ''),
      h('dt', {}, 'Tags'), h('dd', {}, tags.length ? tags.map((t) => h('span', { class: 'chip' }, t)) : 'none'),
      !isIndex && dv.platform(m) ? [h('dt', {}, 'Platform'), h('dd', {}, dv.platform(m))] : null,
      !isIndex && m.config ? [h('dt', {}, 'Config'), h('dd', { class: 'mono digest' }, m.config, ` (${bytes((dv.blobs.get(m.config) || {}).size)})`)] : null,
      h('dt', {}, 'Manifest size'), h('dd', {}, bytes(m.size)),
      parents.length ? [h('dt', {}, 'Part of'), h('dd', {}, parents.map((p) => link(`#/repositories/${encodeURIComponent(id)}/images/${encodeURIComponent(p)}`, short(p))))] : null),
    pull ? [h('h2', {}, 'Pull'), copyable(pull, 'the pull command')] : h('p', { class: 'muted' }, 'Not published: publish the repository to pull it.'),
    body);
}

// ----------------------------------------------------------------- tasks --

function taskTable(list, caption) {
  if (!list.length) return h('p', { class: 'muted' }, 'No tasks.');
  return table(caption, ['Task', 'Kind', 'Repository', 'State', 'Progress', 'Created'],
    list.map((t) => [link(`#/tasks/${t.id}`, h('span', { class: 'mono' }, short(t.id))), t.kind,
      taskRepos(t).map((r) => link(`#/repositories/${encodeURIComponent(r)}`, r)), stateLabel(t.state),
      progressCell(t), when(t.created_at)]), { class: 'tasks' });
}

async function tasksPage(params) {
  const g = generation;
  const state = h('select', { id: 'task-state' }, h('option', { value: '' }, 'any'),
    ['waiting', 'running', 'finished', 'error', 'canceled'].map((s) => h('option', { value: s }, s)));
  state.value = params.get('state') || '';
  const list = h('div', { id: 'task-list' }, h('p', {}, 'Loading…'));
  const updated = h('p', { class: 'hint', id: 'tasks-updated' });
  render(g, 'Tasks', h('h1', {}, 'Tasks'),
    h('form', { class: 'panel filters', onsubmit: (e) => e.preventDefault() },
      h('div', { class: 'field' }, h('label', { for: 'task-state' }, 'State'), state)),
    h('p', { class: 'hint' }, 'This list updates itself every second.'), list, updated);
  state.addEventListener('change', () => history.replaceState(null, '', state.value ? `#/tasks?state=${state.value}` : '#/tasks'));
  poll(1000, async () => {
    try {
      const tasks = await api('GET', `/tasks?limit=100${state.value ? `&state=${state.value}` : ''}`);
      list.replaceChildren(taskTable(tasks, 'Tasks, newest first'));
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      list.replaceChildren(alertBox(e));
      return e.status === 403;
    }
    return false;
  });
}

async function taskPage(id) {
  const g = generation;
  const view = h('div', { id: 'task-view' }, h('p', {}, 'Loading…'));
  const actionMessage = h('div');
  render(g, `Task ${short(id)}`, h('p', {}, link('#/tasks', '← All tasks')), h('h1', {}, `Task ${short(id)}`), view, actionMessage);
  poll(700, async () => {
    let t;
    try {
      t = await api('GET', `/tasks/${encodeURIComponent(id)}`);
    } catch (e) {
      view.replaceChildren(alertBox(e));
      return true;
    }
    const repos = taskRepos(t);
    const mayCancel = !FINAL.includes(t.state) && (can('delete', `/tasks/${t.id}`)
      || (repos.length > 0 && repos.every((r) => can('execute', `/repositories/${r}`))));
    const p = t.progress || {};
    put(view,
      h('dl', { class: 'facts' },
        h('dt', {}, 'Kind'), h('dd', {}, t.kind),
        h('dt', {}, 'State'), h('dd', { id: 'task-state-value' }, stateLabel(t.state), t.cancel_requested && !FINAL.includes(t.state) ? ' (cancel requested)' : ''),
        h('dt', {}, 'Progress'), h('dd', { id: 'task-progress' }, progressCell(t),
          p.items_total ? ` ${p.items_done} of ${p.items_total} items` : '',
          p.bytes_total ? `, ${bytes(p.bytes_done)} of ${bytes(p.bytes_total)}` : ''),
        h('dt', {}, 'Repository'), h('dd', {}, repos.length ? repos.map((r) => link(`#/repositories/${encodeURIComponent(r)}`, r)) : '–'),
        h('dt', {}, 'Created'), h('dd', {}, when(t.created_at)),
        h('dt', {}, 'Started'), h('dd', {}, when(t.started_at) || '–'),
        h('dt', {}, 'Ended'), h('dd', {}, when(t.finished_at) || '–'),
        t.worker ? [h('dt', {}, 'Worker'), h('dd', {}, t.worker)] : null,
        h('dt', {}, 'Id'), h('dd', { class: 'mono' }, t.id)),
      mayCancel ? h('div', { class: 'actions' }, h('button', {
        type: 'button', class: 'danger', id: 'cancel-task',
        onclick: async () => {
          try { await api('POST', `/tasks/${t.id}/cancel`); announce('Cancel requested'); } catch (e) { actionMessage.replaceChildren(alertBox(e)); }
        },
      }, 'Cancel task')) : null,
      t.error ? section('Error', h('div', { class: 'alert', id: 'task-error' }, h('p', {}, t.error.message), t.error.cause ? h('pre', {}, t.error.cause) : null)) : null,
      section('Log', (t.log || []).length
        ? h('ol', { id: 'task-log' }, t.log.map((l) => h('li', { class: `log-${l.level}` },
          h('time', { datetime: l.at }, when(l.at)), ` ${l.level}: `, l.message)))
        : h('p', { class: 'muted' }, 'Nothing logged yet.')),
      p.message ? section('Now', h('p', { id: 'task-now' }, p.message)) : null,
      t.result ? section('Result', h('pre', { id: 'task-result' }, JSON.stringify(t.result, null, 2))) : null,
      section('Input', h('pre', {}, JSON.stringify(t.input, null, 2))));
    if (FINAL.includes(t.state)) announce(`Task ${t.state}`);
    return FINAL.includes(t.state);
  });
}

// ----------------------------------------------------- users and others --

async function accessPage() {
  const g = generation;
  const you = section('You', h('dl', { class: 'facts' },
    h('dt', {}, 'Login'), h('dd', {}, me.login),
    h('dt', {}, 'Name'), h('dd', {}, me.name || '–'),
    h('dt', {}, 'Account'), h('dd', {}, me.source === 'ldap' ? 'directory (LDAP)' : 'local'),
    h('dt', {}, 'Roles'), h('dd', {}, me.roles.length ? me.roles.map((r) => h('span', { class: 'chip' }, r)) : 'none'),
    h('dt', {}, 'Super-user'), h('dd', {}, me.super_user ? 'yes: every permission' : 'no')),
  me.permissions.length ? permissionTable(me.permissions, 'Your permissions (yours and your roles\')') : null);
  const users = h('div', {}, 'Loading…');
  const roles = h('div', {}, 'Loading…');
  const perms = h('div', {}, 'Loading…');
  render(g, 'Users and roles', h('h1', {}, 'Users and roles'), you,
    section('Users', users), section('Roles', roles), section('Permissions', perms));
  const load = async (where, path, show) => {
    try { where.replaceChildren(show(await api('GET', path))); } catch (e) { where.replaceChildren(alertBox(e)); }
  };
  load(users, '/users', (list) => table(`${list.length} users`, ['Login', 'Name', 'Account', 'Roles'],
    list.map((u) => [u.login, u.name, u.source, u.roles.map((r) => h('span', { class: 'chip' }, r))]), { id: 'users-table' }));
  load(roles, '/roles', (list) => table(`${list.length} roles`, ['Role', 'Description', 'Members'],
    list.map((r) => [r.id, r.description, r.users.join(', ')])));
  load(perms, '/permissions', (list) => permissionTable(list, `${list.length} grants`));
}

function permissionTable(list, caption) {
  return table(caption, ['Granted to', 'Resource', 'Operations'],
    list.map((p) => [p.login ? `user ${p.login}` : `role ${p.role_id}`, h('span', { class: 'mono' }, p.resource), p.operations.join(', ')]));
}

async function pluginsPage() {
  const g = generation;
  const status = await api('GET', '/status');
  render(g, 'Plugins', h('h1', {}, 'Plugins'),
    h('p', {}, `Wharf ${status.version}, plugin contract ${status.contract || '?'}.`),
    table('Content-type plugins loaded', ['Plugin', 'Version', 'Content types', 'Routes', 'Wasm'],
      (status.plugins || []).map((p) => [p.name, p.version,
        p.content_types.map((c) => h('span', {}, h('strong', {}, c.name), c.description ? ` — ${c.description}` : '')),
        p.routes.map((r) => h('code', {}, r)), h('span', { class: 'mono', title: p.wasm_sha256 }, short(p.wasm_sha256))]),
      { id: 'plugins-table' }),
    (status.plugin_load_failures || 0) > 0 ? alertBox(`${status.plugin_load_failures} plugin file(s) failed to load: see the server log.`) : null);
}

async function eventsPage() {
  const g = generation;
  const where = h('div', {}, 'Loading…');
  render(g, 'Event listeners', h('h1', {}, 'Event listeners'),
    h('p', { class: 'hint' }, 'Where events (task.*, repository.*, content.*) are sent. Manage them with wharf event listener …'), where);
  try {
    const list = await api('GET', '/events/listeners');
    where.replaceChildren(list.length ? table(`${list.length} listeners`, ['Id', 'Type', 'Target', 'Events', 'Created'],
      list.map((l) => [h('span', { class: 'mono' }, l.id), l.type,
        l.type === 'http' ? l.url : l.type === 'email' ? (l.to || []).join(', ') : 'the broker\'s wharf.events exchange',
        (l.events || []).length ? l.events.join(', ') : 'all', when(l.created_at)])) : h('p', { class: 'muted' }, 'No event listeners.'));
  } catch (e) {
    where.replaceChildren(alertBox(e));
  }
}

// ---------------------------------------------------------------- router --

async function route() {
  generation += 1;
  const mine = generation;
  if (!me) return;
  const [pathPart, query] = (location.hash.slice(1) || '/repositories').split('?');
  const parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || '');
  const sectionName = parts[0] === 'new-repository' ? 'repositories' : (parts[0] || 'repositories');
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.section === sectionName) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  try {
    if (parts[0] === 'repositories' && parts.length === 1) await repositoriesPage(params);
    else if (parts[0] === 'repositories' && parts[2] === 'images' && parts[3]) await imagePage(parts[1], parts[3]);
    else if (parts[0] === 'repositories' && parts[1]) await repositoryPage(parts[1]);
    else if (parts[0] === 'new-repository') await newRepositoryPage();
    else if (parts[0] === 'tasks' && parts[1]) await taskPage(parts[1]);
    else if (parts[0] === 'tasks') await tasksPage(params);
    else if (parts[0] === 'access') await accessPage();
    else if (parts[0] === 'plugins') await pluginsPage();
    else if (parts[0] === 'events') await eventsPage();
    else if (!parts.length) await repositoriesPage(params);
    else render(mine, 'Not found', h('h1', {}, 'No such page'), h('p', {}, link('#/repositories', 'Repositories')));
  } catch (e) {
    if (e instanceof Stale || mine !== generation) return;
    if (me) render(mine, 'Error', h('h1', {}, 'Something went wrong'), alertBox(e));
  }
}

/** With a token: who am I, then the page the URL names. */
async function start() {
  try {
    me = await api('GET', '/me');
  } catch (e) {
    if (e.status !== 401) showLogin(String(e));
    return;
  }
  document.getElementById('who').textContent = `${me.login}${me.super_user ? ' (super-user)' : ''}`;
  document.getElementById('session').hidden = false;
  const nav = document.getElementById('nav');
  nav.hidden = false;
  const show = {
    tasks: can('read', '/tasks'),
    access: true,
    events: can('read', '/events'),
  };
  for (const a of nav.querySelectorAll('a')) a.parentElement.hidden = show[a.dataset.section] === false;
  await route();
}

document.getElementById('logout').addEventListener('click', logout);
document.getElementById('skip-link').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});
window.addEventListener('hashchange', route);
// A bug of the console's own is shown, not swallowed.
window.addEventListener('unhandledrejection', (e) => {
  main.prepend(alertBox(`The console failed: ${e.reason}. Reload the page; if it persists, report it.`));
});
window.addEventListener('error', (e) => {
  main.prepend(alertBox(`The console failed: ${e.message}. Reload the page; if it persists, report it.`));
});

if (sessionStorage.getItem(TOKEN_KEY)) start();
else showLogin();
