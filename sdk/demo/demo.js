// The c10m demo page: the browser SDK served by this same server at /sdk/c10m.js.
// Query parameters: ?topic=/demo/chat&encoding=json|msgpack&connect=0 (do not connect on load).
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_ROWS = 200;

let sdk = null;
let client = null;
const subscriptions = new Map(); // topic -> { handle, li }
let received = 0;

function setState(state, detail) {
  const el = $('state');
  el.dataset.state = state;
  el.textContent = detail ? `${state} (${detail})` : state;
}

function showProblem(text) {
  const p = $('problem');
  p.textContent = text;
  p.hidden = false;
}

function logEvent(kind, text) {
  const li = document.createElement('li');
  li.className = kind;
  li.textContent = `${new Date().toLocaleTimeString()} ${kind}: ${text}`;
  showStats();
  const list = $('events');
  list.prepend(li);
  while (list.children.length > 100) list.lastElementChild.remove();
}

function short(value) {
  const text = typeof value === 'string' ? value : JSON.stringify(value, (_k, v) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v));
  return text === undefined ? String(value) : text;
}

let statsQueued = false;
function showStats() {
  // At most once a frame, however fast messages come.
  if (statsQueued) return;
  statsQueued = true;
  requestAnimationFrame(() => {
    statsQueued = false;
    if (!client) return;
    const s = client.stats;
    $('stat-connections').textContent = String(s.connections);
    $('stat-delivered').textContent = String(s.delivered);
    $('stat-duplicates').textContent = String(s.duplicates);
    $('stat-gaps').textContent = String(s.gaps);
    $('stat-queued').textContent = String(client.queuedPublishes);
  });
}

function onMessage(msg) {
  received++;
  showStats();
  $('msg-count').textContent = String(received);
  const tr = document.createElement('tr');
  tr.dataset.topic = msg.topic;
  tr.dataset.seq = String(msg.seq);
  const latencyMs = (Date.now() * 1000 - msg.tsMicros) / 1000;
  const flags = [msg.replay ? 'replay' : '', msg.snapshot ? 'snapshot' : ''].filter(Boolean).join(' ');
  for (const [cls, text] of [
    ['topic', msg.topic],
    ['seq', String(msg.seq)],
    ['epoch', String(msg.epoch)],
    ['latency', `${latencyMs.toFixed(1)} ms`],
    ['data', short(msg.data)],
    ['flag', flags],
  ]) {
    const td = document.createElement('td');
    td.className = cls;
    td.textContent = text;
    td.title = text;
    tr.append(td);
  }
  const body = $('messages').tBodies[0];
  body.prepend(tr);
  while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
  const sub = subscriptions.get(msg.topic);
  if (sub) sub.li.querySelector('.pos').textContent = `epoch ${msg.epoch} seq ${msg.seq}`;
}

function renderSubscription(topic) {
  const li = document.createElement('li');
  li.dataset.topic = topic;
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = topic;
  name.title = topic;
  const pos = document.createElement('span');
  pos.className = 'pos';
  pos.textContent = 'subscribing…';
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'secondary';
  button.textContent = 'Unsubscribe';
  button.addEventListener('click', () => unsubscribe(topic));
  li.append(name, pos, button);
  $('subs').append(li);
  return li;
}

function subscribe(topic) {
  if (!client || subscriptions.has(topic)) return;
  let handle;
  try {
    handle = client.subscribe(topic, onMessage, { qos: 'guaranteed' });
  } catch (err) {
    logEvent('error', err.message);
    return;
  }
  const li = renderSubscription(topic);
  subscriptions.set(topic, { handle, li });
  handle.ready.then(
    (pos) => {
      li.querySelector('.pos').textContent = `epoch ${pos.epoch} seq ${pos.seq}`;
      li.dataset.ready = 'true';
      logEvent('subscribed', `${topic} at seq ${pos.seq}`);
    },
    (err) => {
      logEvent('error', err.message);
      li.remove();
      subscriptions.delete(topic);
    },
  );
}

function unsubscribe(topic) {
  const sub = subscriptions.get(topic);
  if (!sub) return;
  sub.handle.unsubscribe();
  sub.li.remove();
  subscriptions.delete(topic);
  logEvent('unsubscribed', topic);
}

function parseData(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function publish() {
  const result = $('pub-result');
  if (!client) return;
  const topic = $('pub-topic').value.trim();
  const data = parseData($('pub-data').value);
  result.className = 'result';
  result.textContent = client.state === 'connected' ? 'publishing…' : 'queued until connected…';
  showStats();
  try {
    const ack = await client.publish(topic, data, { retain: $('pub-retain').checked });
    result.textContent = `published: seq ${ack.seq}`;
    showStats();
    result.dataset.seq = String(ack.seq);
  } catch (err) {
    result.className = 'result bad';
    result.textContent = `${err.code}: ${err.message}`;
  }
}

function connectClient() {
  const encoding = $('encoding').value;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
  $('url').textContent = url;
  client = sdk.connect(url, { encoding, reconnect: { initialDelayMs: 250, maxDelayMs: 10000 } });
  setState('connecting');
  client.on('connected', (e) => {
    setState('connected', encoding);
    logEvent('connected', e.reconnect ? `reconnected to ${e.url}` : e.url);
  });
  client.on('disconnected', (e) => {
    setState(e.willReconnect ? 'reconnecting' : 'closed', `close ${e.code}`);
    logEvent('disconnected', `${e.code} ${e.reason || ''}`);
  });
  client.on('reconnecting', (e) => {
    setState('reconnecting', `attempt ${e.attempt}, in ${e.delayMs} ms`);
  });
  client.on('recovered', (e) => logEvent('recovered', `${e.topic} from seq ${e.fromSeq}, ${e.replayed} replayed`));
  client.on('gap', (g) => logEvent('gap', `${g.topic} ${g.fromSeq === null ? 'unknown range' : `seq ${g.fromSeq}..${g.toSeq}`} (${g.reason})`));
  client.on('error', (err) => logEvent('error', `${err.code}: ${err.message}`));
  $('conn-button').textContent = 'Disconnect';
  for (const topic of [...subscriptions.keys()]) subscriptions.get(topic).li.remove();
  subscriptions.clear();
  subscribe($('sub-topic').value.trim());
}

async function disconnectClient() {
  const c = client;
  client = null;
  $('conn-button').textContent = 'Connect';
  for (const sub of subscriptions.values()) sub.li.remove();
  subscriptions.clear();
  await c.close();
  setState('closed', 'by you');
}

async function main() {
  if (params.get('topic')) {
    $('sub-topic').value = params.get('topic');
    $('pub-topic').value = params.get('topic');
  }
  if (params.get('encoding') === 'msgpack') $('encoding').value = 'msgpack';
  try {
    sdk = await import('/sdk/c10m.js');
  } catch (err) {
    setState('error');
    showProblem(`The SDK bundle did not load from /sdk/c10m.js (${err.message}). Build it with \`npm run build\` and restart the server.`);
    return;
  }
  window.c10m = sdk; // for the browser console
  $('conn-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (client) disconnectClient();
    else connectClient();
  });
  $('sub-form').addEventListener('submit', (e) => {
    e.preventDefault();
    subscribe($('sub-topic').value.trim());
  });
  $('pub-form').addEventListener('submit', (e) => {
    e.preventDefault();
    publish();
  });
  $('encoding').addEventListener('change', () => {
    if (client) disconnectClient().then(connectClient);
  });
  if (params.get('connect') !== '0') connectClient();
  else setState('closed', 'not connected');
}

main();
