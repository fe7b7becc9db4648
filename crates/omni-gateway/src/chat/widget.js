/*!
 * omni web chat widget: the browser side of the website live chat.
 * Contract: docs/web-chat-protocol.md (paths, WebSocket protocol, UI).
 *
 * Plain ES2019, no framework, no build step. Works under a strict Content-Security-Policy:
 * no eval, no inline script or style; the DOM is built with createElement/textContent only, so
 * whatever a visitor or an agent types is always shown as text, never parsed as HTML.
 *
 * Embed:  <script src="https://chat.shop.example/chat/widget.js" data-account="default" defer></script>
 * Optional, before it:  window.omniChat = { identity: {id, email, name, hash}, strings: {...} }
 * or on the tag:  data-customer-id, data-customer-email, data-customer-name, data-customer-hash
 *
 * localStorage keys (all "omni-chat:<account>:..."):
 *   token    the visitor token the last `welcome` gave (raw string)
 *   pending  JSON list of {client_id, text} not yet acknowledged (images wait in memory only:
 *            too large for localStorage; one not acknowledged before a reload is not sent)
 *   seq      the highest agent `seq` shown (sent back as `last_seq` in `hello`)
 *   conversation  the conversation `seq` and `history` belong to (from `welcome`); when the
 *            gateway names another one (the visitor logged in, a new token), both start afresh
 *   name     the name typed with the first message ("" when none): its presence hides the field
 *   history  JSON list of the last shown messages, so a reload or a new page shows the conversation
 */
(function () {
  'use strict';

  // ---------------------------------------------------------------------------------------------
  // 1. Our own <script>: account, gateway origin, socket and style sheet URLs.
  // ---------------------------------------------------------------------------------------------
  function isWidgetSrc(src) {
    try { return new URL(src, location.href).pathname.endsWith('/chat/widget.js'); } catch (e) { return false; }
  }
  let script = document.currentScript;
  if (!script || !script.src) {
    script = null;
    const all = document.getElementsByTagName('script');
    for (let i = all.length - 1; i >= 0; i--) {
      if (all[i].src && isWidgetSrc(all[i].src)) { script = all[i]; break; }
    }
  }
  if (!script) { console.warn('omni chat: cannot find the widget <script> tag'); return; }
  // Included twice on one page: the first copy wins.
  const html = document.documentElement;
  if (html.hasAttribute('data-omni-chat')) return;
  html.setAttribute('data-omni-chat', '');

  const ACCOUNT = script.getAttribute('data-account') || 'default';
  const SRC = new URL(script.src, location.href);
  const CSS_URL = SRC.origin + '/chat/widget.css';
  const WS_URL = (SRC.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + SRC.host + '/chat/ws/' + encodeURIComponent(ACCOUNT);
  // The fallback where WebSockets do not get through: the same frames over HTTP.
  const POLL_URL = SRC.origin + '/chat/poll/' + encodeURIComponent(ACCOUNT);
  const SEND_URL = SRC.origin + '/chat/send/' + encodeURIComponent(ACCOUNT);
  const WS_FAILURES_BEFORE_FALLBACK = 2; // WebSocket attempts in a row that never opened
  const OPEN_MS = 10000;        // a WebSocket not open within this failed (a proxy may swallow it)
  const POLL_GAP_MS = 1000;     // a poll that came back at once is not repeated sooner than this

  const PING_MS = 25000;        // {"type":"ping"} this often
  const DEAD_MS = 60000;        // no frame at all for this long: the socket is dead
  const BACKOFF_MIN_MS = 1000;  // reconnect / retry backoff: 1 s doubling to 30 s, +-30 % jitter
  const BACKOFF_MAX_MS = 30000;
  const HISTORY_MAX = 50;       // messages kept for the next page

  // ---------------------------------------------------------------------------------------------
  // 2. Strings. Picked from <html lang>, else the browser's languages, else English; any key can
  //    be overridden with window.omniChat.strings = {title: "...", ...}.
  // ---------------------------------------------------------------------------------------------
  const STRINGS = {
    en: {
      title: 'Chat with us', open: 'Open chat', close: 'Close chat',
      greeting: 'Hi! How can we help you today?',
      placeholder: 'Type your message…', send: 'Send', message: 'Message',
      name: 'Your name', namePlaceholder: 'Your name (optional)', you: 'You', agent: 'Support',
      sending: 'Sending…', sent: 'Sent', notSent: 'Not sent',
      tooLong: 'Message is too long', rateLimited: 'Too many messages, please wait a moment',
      retrying: 'Not delivered yet, trying again…',
      connecting: 'Connecting…', online: 'Connected', offline: 'Offline, reconnecting…',
      attach: 'Send an image', imageTooLarge: 'Image is too large', imageType: 'Only images can be sent',
      closed: 'We are away right now. Leave your email and we will answer you there.',
      busy: 'This is taking longer than usual. Leave your email and we will answer you there.',
      email: 'Your email', emailSave: 'Answer me by email', emailBad: 'Please check the email address',
      emailNote: 'Please answer me at {email}', emailKept: 'We will answer at {email} if you have left.'
    },
    tr: {
      title: 'Bize yazın', open: 'Sohbeti aç', close: 'Sohbeti kapat',
      greeting: 'Merhaba! Size nasıl yardımcı olabiliriz?',
      placeholder: 'Mesajınızı yazın…', send: 'Gönder', message: 'Mesaj',
      name: 'Adınız', namePlaceholder: 'Adınız (isteğe bağlı)', you: 'Siz', agent: 'Destek',
      sending: 'Gönderiliyor…', sent: 'Gönderildi', notSent: 'Gönderilemedi',
      tooLong: 'Mesaj çok uzun', rateLimited: 'Çok fazla mesaj gönderdiniz, lütfen biraz bekleyin',
      retrying: 'Henüz iletilemedi, yeniden deneniyor…',
      connecting: 'Bağlanıyor…', online: 'Bağlandı', offline: 'Bağlantı yok, yeniden bağlanılıyor…',
      attach: 'Resim gönder', imageTooLarge: 'Resim çok büyük', imageType: 'Yalnızca resim gönderilebilir',
      closed: 'Şu anda çevrim dışıyız. E-posta adresinizi bırakın, size oradan yanıt verelim.',
      busy: 'Yanıtımız her zamankinden uzun sürüyor. E-posta adresinizi bırakın, size oradan yanıt verelim.',
      email: 'E-posta adresiniz', emailSave: 'Bana e-postayla yanıt verin', emailBad: 'Lütfen e-posta adresini kontrol edin',
      emailNote: 'Lütfen bana {email} adresinden yanıt verin', emailKept: 'Ayrılırsanız {email} adresine yanıt vereceğiz.'
    },
    ar: {
      title: 'تحدث معنا', open: 'افتح المحادثة', close: 'أغلق المحادثة',
      greeting: 'مرحبًا! كيف يمكننا مساعدتك اليوم؟',
      placeholder: 'اكتب رسالتك…', send: 'إرسال', message: 'الرسالة',
      name: 'اسمك', namePlaceholder: 'اسمك (اختياري)', you: 'أنت', agent: 'فريق الدعم',
      sending: 'جارٍ الإرسال…', sent: 'تم الإرسال', notSent: 'لم يتم الإرسال',
      tooLong: 'الرسالة طويلة جدًا', rateLimited: 'أرسلت رسائل كثيرة، يُرجى الانتظار قليلًا',
      retrying: 'لم تصل بعد، جارٍ إعادة المحاولة…',
      connecting: 'جارٍ الاتصال…', online: 'متصل', offline: 'غير متصل، جارٍ إعادة الاتصال…',
      attach: 'أرسل صورة', imageTooLarge: 'الصورة كبيرة جدًا', imageType: 'يمكن إرسال الصور فقط',
      closed: 'نحن غير متاحين الآن. اترك بريدك الإلكتروني وسنرد عليك هناك.',
      busy: 'يستغرق الرد وقتًا أطول من المعتاد. اترك بريدك الإلكتروني وسنرد عليك هناك.',
      email: 'بريدك الإلكتروني', emailSave: 'أجيبوني بالبريد الإلكتروني', emailBad: 'يُرجى التحقق من عنوان البريد الإلكتروني',
      emailNote: 'يُرجى الرد علي على {email}', emailKept: 'سنرد على {email} إذا غادرت.'
    },
    nl: {
      title: 'Chat met ons', open: 'Chat openen', close: 'Chat sluiten',
      greeting: 'Hallo! Waarmee kunnen we je helpen?',
      placeholder: 'Typ je bericht…', send: 'Versturen', message: 'Bericht',
      name: 'Je naam', namePlaceholder: 'Je naam (optioneel)', you: 'Jij', agent: 'Klantenservice',
      sending: 'Bezig met versturen…', sent: 'Verstuurd', notSent: 'Niet verstuurd',
      tooLong: 'Je bericht is te lang', rateLimited: 'Te veel berichten, wacht even',
      retrying: 'Nog niet afgeleverd, we proberen het opnieuw…',
      connecting: 'Verbinden…', online: 'Verbonden', offline: 'Offline, opnieuw verbinden…',
      attach: 'Afbeelding versturen', imageTooLarge: 'Afbeelding is te groot', imageType: 'Alleen afbeeldingen kunnen worden verstuurd',
      closed: 'We zijn er nu niet. Laat je e-mailadres achter, dan antwoorden we je daar.',
      busy: 'Het duurt langer dan normaal. Laat je e-mailadres achter, dan antwoorden we je daar.',
      email: 'Je e-mailadres', emailSave: 'Antwoord me per e-mail', emailBad: 'Controleer het e-mailadres',
      emailNote: 'Antwoord me graag op {email}', emailKept: 'Als je weg bent, antwoorden we op {email}.'
    }
  };
  const RTL = { ar: true };

  // The page's language, else the browser's: the first one we have strings for wins. The tag
  // itself (BCP 47, e.g. "tr-TR") goes to the server as `language`.
  const tags = [html.getAttribute('lang')].concat(navigator.languages || [], navigator.language)
    .filter(function (t) { return typeof t === 'string' && /^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$/.test(t); });
  let LANG = 'en';
  for (const t of tags) {
    const primary = t.split('-')[0].toLowerCase();
    if (STRINGS[primary]) { LANG = primary; break; }
  }
  const LANGUAGE_TAG = tags.length ? tags[0] : LANG;
  const DIR = RTL[LANG] ? 'rtl' : 'ltr';

  // ---------------------------------------------------------------------------------------------
  // 3. Storage: localStorage under "omni-chat:<account>:<name>", or memory when it is unavailable
  //    (privacy modes, blocked third-party storage).
  // ---------------------------------------------------------------------------------------------
  const memory = {};
  let storage = null;
  try { storage = window.localStorage; storage.setItem('omni-chat:probe', '1'); storage.removeItem('omni-chat:probe'); } catch (e) { storage = null; }
  function key(name) { return 'omni-chat:' + ACCOUNT + ':' + name; }
  function getItem(name) {
    if (storage) { try { return storage.getItem(key(name)); } catch (e) { /* fall through */ } }
    return Object.prototype.hasOwnProperty.call(memory, name) ? memory[name] : null;
  }
  function setItem(name, value) {
    memory[name] = value;
    if (storage) { try { storage.setItem(key(name), value); } catch (e) { /* quota: memory only */ } }
  }
  function removeItem(name) {
    delete memory[name];
    if (storage) { try { storage.removeItem(key(name)); } catch (e) { /* ignore */ } }
  }
  function getList(name) {
    try {
      const list = JSON.parse(getItem(name) || '[]');
      return Array.isArray(list) ? list.filter((x) => x && typeof x === 'object') : [];
    } catch (e) { return []; }
  }

  // Pending messages: always read-modify-write, so two tabs of the same shop do not lose each
  // other's messages (a message both tabs send is stored once: same client_id).
  function readPending() {
    return getList('pending').filter((p) => typeof p.client_id === 'string' && typeof p.text === 'string');
  }
  // Images waiting for their `ack`: client_id -> {client_id, text, image: {name, media_type, data}}.
  const pendingImages = new Map();
  function allPending() { return readPending().concat(Array.from(pendingImages.values())); }
  function findPending(id) { return pendingImages.get(id) || readPending().filter((p) => p.client_id === id)[0] || null; }
  function addPending(item) {
    const list = readPending().filter((p) => p.client_id !== item.client_id);
    list.push({ client_id: item.client_id, text: item.text });
    setItem('pending', JSON.stringify(list));
  }
  function dropPending(id) {
    pendingImages.delete(id);
    setItem('pending', JSON.stringify(readPending().filter((p) => p.client_id !== id)));
  }

  // History: {from: "visitor", client_id, text} or {from: "agent", seq, text, agent, at}.
  function addHistory(entry) {
    const list = getList('history').filter(function (h) {
      return entry.from === 'agent' ? h.seq !== entry.seq : h.client_id !== entry.client_id;
    });
    list.push(entry);
    setItem('history', JSON.stringify(list.slice(-HISTORY_MAX)));
  }

  // Agent messages: each seq is shown once. `baseSeq` was seen before this page loaded (it is in
  // the history); `lastSeq` is the highest this page has seen, sent as `last_seq` in `hello`.
  // Seqs are the answers' offsets in the broker and start at 0: -1 means none seen.
  function storedSeq() {
    const seq = parseInt(getItem('seq'), 10);
    return Number.isInteger(seq) ? seq : -1;
  }
  let baseSeq = storedSeq();
  let lastSeq = baseSeq;
  const shownSeqs = new Set();

  // ---------------------------------------------------------------------------------------------
  // 4. Helpers.
  // ---------------------------------------------------------------------------------------------
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.keys(attrs || {}).forEach((k) => { if (attrs[k] != null) node.setAttribute(k, attrs[k]); });
    if (text != null) node.textContent = text;
    return node;
  }
  function add(parent) {
    for (let i = 1; i < arguments.length; i++) parent.appendChild(arguments[i]);
    return parent;
  }
  function icon(cls, d) {
    const NS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    svg.setAttribute('class', cls);
    const path = document.createElementNS(NS, 'path');
    path.setAttribute('d', d);
    return add(svg, path);
  }
  // A random client id: "m" + 32 hex digits (within the 1-64 chars of A-Z a-z 0-9 _ -).
  function newClientId() {
    const bytes = new Uint8Array(16);
    if (window.crypto && crypto.getRandomValues) crypto.getRandomValues(bytes);
    else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    return 'm' + Array.from(bytes, (b) => (b + 256).toString(16).slice(1)).join('');
  }
  // Exponential backoff with jitter: attempt 0 -> ~1 s, 1 -> ~2 s, ... capped at ~30 s, +-30 %.
  function backoff(attempt) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, Math.min(attempt, 10)));
    return Math.round(base * (0.7 + Math.random() * 0.6));
  }
  function formatTime(at) {
    const d = at ? new Date(at) : new Date();
    if (isNaN(d.getTime())) return '';
    try { return d.toLocaleTimeString(LANG, { hour: '2-digit', minute: '2-digit' }); } catch (e) { return ''; }
  }
  function ensureStyleSheet(done) {
    let link = null;
    const links = document.querySelectorAll('link[rel~="stylesheet"]');
    for (let i = 0; i < links.length; i++) if (links[i].href === CSS_URL) link = links[i];
    if (link && link.sheet) { done(); return; }
    let fired = false;
    function once() { if (!fired) { fired = true; done(); } }
    if (!link) {
      link = el('link', { rel: 'stylesheet', href: CSS_URL });
      (document.head || html).appendChild(link);
    }
    link.addEventListener('load', once);
    link.addEventListener('error', once);
    setTimeout(once, 3000); // show the widget even if the style sheet is slow
  }

  // ---------------------------------------------------------------------------------------------
  // 5. The widget, built once the <body> exists.
  // ---------------------------------------------------------------------------------------------
  function start() {
    const config = (window.omniChat && typeof window.omniChat === 'object') ? window.omniChat : {};
    const S = Object.assign({}, STRINGS[LANG]);
    if (config.strings && typeof config.strings === 'object') {
      Object.keys(S).forEach(function (k) { if (typeof config.strings[k] === 'string') S[k] = config.strings[k]; });
    }

    // --- DOM ------------------------------------------------------------------------------------
    const root = el('div', { id: 'omni-chat-root', class: 'omni-chat-root', lang: LANG, dir: DIR, hidden: '' });
    const launcher = el('button', {
      id: 'omni-chat-launcher', class: 'omni-chat-launcher', type: 'button', dir: DIR, 'data-omni': 'launcher',
      'aria-label': S.open, 'aria-expanded': 'false', 'aria-controls': 'omni-chat-panel'
    });
    const CLOSE_ICON = 'M6 6l12 12M18 6L6 18';
    const badge = el('span', { class: 'omni-chat-badge', 'aria-hidden': 'true', hidden: '' });
    add(launcher, icon('omni-chat-icon omni-chat-icon-chat', 'M6 4h12a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2h-8l-6 4V6a2 2 0 0 1 2-2z'),
      icon('omni-chat-icon omni-chat-icon-close', CLOSE_ICON), badge);

    const panel = el('div', {
      id: 'omni-chat-panel', class: 'omni-chat-panel', role: 'dialog', 'aria-label': S.title,
      dir: DIR, 'data-omni': 'panel', hidden: ''
    });
    const closeBtn = el('button', { id: 'omni-chat-close', class: 'omni-chat-close', type: 'button', 'aria-label': S.close, 'data-omni': 'close' });
    add(closeBtn, icon('omni-chat-icon omni-chat-icon-close', CLOSE_ICON));
    const header = add(el('div', { class: 'omni-chat-header' }),
      el('h2', { id: 'omni-chat-title', class: 'omni-chat-title' }, S.title), closeBtn);
    const status = el('div', { id: 'omni-chat-status', class: 'omni-chat-status', role: 'status', 'data-omni': 'status' });
    // The offline or busy notice, with a form for an email to be answered at.
    const notice = el('div', { id: 'omni-chat-notice', class: 'omni-chat-notice', 'data-omni': 'notice', hidden: '' });
    const noticeText = el('p', { class: 'omni-chat-notice-text', role: 'status' });
    const contactForm = el('form', { class: 'omni-chat-contact', novalidate: '' });
    const contactInput = el('input', {
      id: 'omni-chat-contact', class: 'omni-chat-contact-input', type: 'email', 'data-omni': 'contact', maxlength: '254',
      autocomplete: 'email', 'aria-label': S.email, placeholder: S.email, required: ''
    });
    const contactBtn = el('button', { class: 'omni-chat-contact-save', type: 'submit', 'data-omni': 'contact-save' }, S.emailSave);
    add(notice, noticeText, add(contactForm, contactInput, contactBtn));
    const log = el('div', { id: 'omni-chat-log', class: 'omni-chat-log', role: 'log', 'aria-live': 'polite', 'aria-label': S.title, tabindex: '0' });
    log.appendChild(el('p', { class: 'omni-chat-greeting' }, S.greeting));
    const form = el('form', { id: 'omni-chat-form', class: 'omni-chat-form', novalidate: '' });
    const nameInput = el('input', {
      id: 'omni-chat-name', class: 'omni-chat-name', type: 'text', 'data-omni': 'name', maxlength: '80',
      autocomplete: 'name', 'aria-label': S.name, placeholder: S.namePlaceholder
    });
    const input = el('textarea', {
      id: 'omni-chat-input', class: 'omni-chat-input', rows: '1', 'data-omni': 'input',
      'aria-label': S.message, placeholder: S.placeholder
    });
    const sendBtn = el('button', { id: 'omni-chat-send', class: 'omni-chat-send', type: 'submit', 'data-omni': 'send', 'aria-label': S.send }, S.send);
    // Images: a button that opens the file picker, paste into the text area, or drop on the panel;
    // shown once `welcome` says the chat takes them.
    const fileInput = el('input', { id: 'omni-chat-file', class: 'omni-chat-file', type: 'file', 'data-omni': 'file', tabindex: '-1', 'aria-hidden': 'true' });
    const attachBtn = el('button', { id: 'omni-chat-attach', class: 'omni-chat-attach', type: 'button', 'data-omni': 'attach', 'aria-label': S.attach, title: S.attach, hidden: '' });
    add(attachBtn, icon('omni-chat-icon', 'M16.5 6.5l-7.8 7.8a2 2 0 0 0 2.8 2.8l7.8-7.8a4 4 0 0 0-5.7-5.7L5.8 11.4a6 6 0 0 0 8.5 8.5l6.2-6.2'));
    add(form, nameInput, add(el('div', { class: 'omni-chat-row' }), attachBtn, input, sendBtn), fileInput);
    add(document.body, add(root, add(panel, header, status, notice, log, form), launcher));
    ensureStyleSheet(function () { root.hidden = false; });

    // The name field is shown until the first message (prefilled with a known customer's name).
    let nameShown = getItem('name') === null;
    nameInput.hidden = !nameShown;
    const known = config.identity || tagIdentity();
    if (nameShown && known && typeof known.name === 'string') nameInput.value = known.name;

    // --- messages -------------------------------------------------------------------------------
    const bubbles = new Map();  // client_id -> {node, meta, text} of the visitor messages shown here

    function scrollDown() { log.scrollTop = log.scrollHeight; }

    function renderVisitor(clientId, text, state) {
      if (bubbles.has(clientId)) return bubbles.get(clientId);
      const node = el('div', { class: 'omni-chat-msg omni-chat-msg-visitor', 'data-omni': 'message', 'data-from': 'visitor', 'data-client-id': clientId });
      const meta = el('div', { class: 'omni-chat-meta' });
      add(node, el('span', { class: 'omni-chat-sr' }, S.you + ': '), el('div', { class: 'omni-chat-text', dir: 'auto' }, text), meta);
      const b = { node: node, meta: meta, text: text };
      bubbles.set(clientId, b);
      setState(b, state, '');
      log.appendChild(node);
      scrollDown();
      return b;
    }

    // state: "sending" | "sent" | "failed"; note: a reason ("failed") or a hint ("sending").
    function setState(b, state, note) {
      b.node.setAttribute('data-state', state);
      const label = state === 'sent' ? S.sent : state === 'failed' ? S.notSent : S.sending;
      b.meta.textContent = note ? label + ' · ' + note : label;
    }

    function renderAgent(entry) {
      const node = el('div', { class: 'omni-chat-msg omni-chat-msg-agent', 'data-omni': 'message', 'data-from': 'agent' });
      if (entry.seq != null) node.setAttribute('data-seq', String(entry.seq));
      add(node, el('div', { class: 'omni-chat-author' }, entry.agent || S.agent), el('div', { class: 'omni-chat-text', dir: 'auto' }, entry.text));
      const time = formatTime(entry.at);
      if (time) node.appendChild(el('div', { class: 'omni-chat-meta' }, time));
      log.appendChild(node);
      scrollDown();
    }

    // What the last page showed, then what is still waiting for an `ack`.
    getList('history').forEach(function (h) {
      if (h.from === 'agent' && typeof h.text === 'string') {
        if (typeof h.seq === 'number') shownSeqs.add(h.seq);
        renderAgent(h);
      }
      else if (h.from === 'visitor' && typeof h.client_id === 'string' && typeof h.text === 'string') renderVisitor(h.client_id, h.text, 'sent');
    });
    readPending().forEach(function (p) { renderVisitor(p.client_id, p.text, 'sending'); });

    // --- the socket -----------------------------------------------------------------------------
    let ws = null;            // the current WebSocket, or null
    let ready = false;        // `welcome` received on it
    let attempt = 0;          // reconnect attempts since the last `welcome`
    let reconnectTimer = 0;
    let pingTimer = 0;
    let deadTimer = 0;
    let helloName = null;     // the name the current socket's `hello` carried
    let polling = false;      // WebSockets do not get through here: the HTTP fallback
    let opened = false;       // the current socket opened
    let wsFailures = 0;       // WebSocket attempts in a row that never opened
    const retryTimers = new Map();  // client_id -> timer of a message sent again later
    const retryCounts = new Map();  // client_id -> `unavailable` answers so far

    function setStatus(state) {
      status.setAttribute('data-state', state);
      status.textContent = S[state];
      root.setAttribute('data-status', state);
    }
    setStatus('connecting');

    function send(frame) {
      if (!ws || ws.readyState !== 1) return false;
      try { ws.send(JSON.stringify(frame)); return true; } catch (e) { return false; }
    }

    // The name for `hello`: the one sent with the first message, else what is typed so far.
    function currentName() {
      const stored = getItem('name');
      const name = stored !== null ? stored : nameInput.value.trim();
      return name || null;
    }

    // The shop's logged-in customer: window.omniChat.identity, else the tag's data-customer-*
    // attributes (no inline script needed under a strict CSP).
    function tagIdentity() {
      const out = {};
      ['id', 'email', 'name', 'hash'].forEach(function (k) {
        const v = script.getAttribute('data-customer-' + k);
        if (v) out[k] = v;
      });
      return Object.keys(out).length ? out : null;
    }

    function identity() {
      const id = config.identity || tagIdentity();
      if (!id || typeof id !== 'object') return null;
      if (id.id == null || !id.hash) { console.warn('omni chat: identity needs id and hash; sent as anonymous'); return null; }
      const out = {};
      ['id', 'email', 'name', 'hash'].forEach(function (k) { if (id[k] != null) out[k] = String(id[k]); });
      return out;
    }

    // The hello of a new socket (or of every request of the fallback).
    function helloFrame() {
      helloName = currentName();
      const hello = {
        type: 'hello', token: getItem('token') || null, identity: identity(), name: helloName, language: LANGUAGE_TAG,
        contact_email: getItem('contact_email') || null
      };
      if (lastSeq >= 0) {
        hello.last_seq = lastSeq;
        hello.conversation = getItem('conversation');
      }
      return hello;
    }

    // A stand-in for a WebSocket over plain HTTP, for networks that block WebSockets: long polls
    // bring the gateway's frames (the first poll's `welcome` opens it), each visitor frame is one
    // POST answered with its `ack` or `error`. Every request carries a fresh hello, so any
    // gateway replica can answer it. Text bodies keep the requests "simple" (no CORS preflight).
    function pollSocket() {
      const handlers = { open: [], message: [], close: [] };
      const sock = { readyState: 0, addEventListener: function (type, fn) { if (handlers[type]) handlers[type].push(fn); } };
      const inFlight = new Set();
      let welcome = null;       // the welcome taken (the first, or a later one that differs)
      let sending = Promise.resolve(); // visitor frames go one after the other, in order
      function emit(type, frame) {
        const ev = frame === undefined ? {} : { data: JSON.stringify(frame) };
        handlers[type].forEach(function (fn) { fn(ev); });
      }
      function post(url, body) {
        const ctl = new AbortController();
        inFlight.add(ctl);
        return fetch(url, {
          method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
          credentials: 'omit', cache: 'no-store', signal: ctl.signal
        }).finally(function () { inFlight.delete(ctl); });
      }
      function close() {
        if (sock.readyState === 3) return;
        sock.readyState = 3;
        inFlight.forEach(function (ctl) { ctl.abort(); });
        emit('close');
      }
      function poll() {
        if (sock.readyState === 3) return;
        const first = !welcome;
        const started = Date.now();
        post(POLL_URL, { hello: helloFrame(), first: first }).then(function (r) {
          if (!r.ok) throw new Error('poll ' + r.status);
          return r.json();
        }).then(function (answer) {
          (Array.isArray(answer.frames) ? answer.frames : []).forEach(function (frame) {
            if (!frame || sock.readyState === 3) return;
            if (frame.type === 'welcome') {
              // Every poll says it; the page takes it when it is new (the first, another token
              // or conversation: a login in another tab); the others only prove it alive.
              if (welcome && welcome.token === frame.token && welcome.conversation === frame.conversation) {
                emit('message', { type: 'pong' });
                return;
              }
              welcome = frame;
              sock.readyState = 1;
            }
            emit('message', frame);
          });
          // Answered at once when something was waiting; never a tight loop.
          setTimeout(poll, first ? 0 : Math.max(0, POLL_GAP_MS - (Date.now() - started)));
        }).catch(close); // the widget reconnects after its backoff
      }
      sock.send = function (text) {
        if (sock.readyState !== 1) throw new Error('not open');
        const frame = JSON.parse(text);
        if (frame.type === 'ping') { emit('message', { type: 'pong' }); return; }
        sending = sending.then(function () {
          if (sock.readyState !== 1) return null;
          return post(SEND_URL, { hello: helloFrame(), frame: frame }).then(function (r) {
            return r.json().catch(function () {
              return { type: 'error', code: r.status === 413 ? 'too_large' : 'unavailable' };
            });
          }, function () {
            return { type: 'error', code: 'unavailable' };
          });
        }).then(function (answer) {
          // A request refused as a whole (too large, not reached) is this frame's refusal; an
          // `invalid` without a client id is about the request, and the message waits.
          if (answer && answer.type === 'error' && answer.client_id == null && answer.code !== 'invalid') {
            answer.client_id = frame.client_id || null;
          }
          if (answer && sock.readyState === 1) emit('message', answer);
        });
      };
      sock.close = close;
      // Opened at once, like a socket whose hello is sent on 'open': that hello starts the polls.
      setTimeout(function () {
        if (sock.readyState === 3) return;
        handlers.open.forEach(function (fn) { fn({}); });
        poll();
      }, 0);
      return sock;
    }

    function connect() {
      clearTimeout(reconnectTimer);
      reconnectTimer = 0;
      if (ws) return;
      let sock;
      if (!polling && typeof WebSocket !== 'function') polling = true;
      try { sock = polling ? pollSocket() : new WebSocket(WS_URL); } catch (e) { polling = true; lost(); return; }
      ws = sock;
      opened = false;
      // A connection attempt that hangs (a proxy that swallows the upgrade) fails after OPEN_MS.
      clearTimeout(deadTimer);
      deadTimer = setTimeout(lost, polling ? DEAD_MS : OPEN_MS);
      sock.addEventListener('open', function () {
        if (ws !== sock) return;
        opened = true;
        alive();
        if (!polling) {
          wsFailures = 0;
          send(helloFrame());
          pingTimer = setInterval(function () { send({ type: 'ping' }); }, PING_MS);
        }
      });
      sock.addEventListener('message', (ev) => { if (ws === sock) { alive(); onFrame(ev.data); } });
      sock.addEventListener('close', function () { if (ws === sock) lost(); });
      // 'error' is always followed by 'close'.
    }

    // Forget the current socket (closing it if it is still open).
    function teardown() {
      clearInterval(pingTimer);
      clearTimeout(deadTimer);
      const sock = ws;
      ws = null;
      ready = false;
      if (sock) { try { sock.close(1000); } catch (e) { /* already closed */ } }
    }

    // The socket closed, failed or went silent: "offline" until the next `welcome`, and a new
    // attempt after the backoff.
    function lost() {
      // A WebSocket that never opens, again and again, while the page is online: something on
      // the way blocks WebSockets. The rest of this page's life goes over HTTP.
      if (ws && !polling && !opened && ++wsFailures >= WS_FAILURES_BEFORE_FALLBACK && navigator.onLine !== false) polling = true;
      teardown();
      setStatus('offline');
      clearTimeout(reconnectTimer);
      reconnectTimer = setTimeout(connect, backoff(attempt));
      attempt++;
    }

    // Any frame (pong included) proves the socket alive; none for 60 s and it is dead.
    function alive() {
      clearTimeout(deadTimer);
      deadTimer = setTimeout(lost, DEAD_MS);
    }

    // Connect now, unless a reconnect is already waiting out its backoff.
    function ensureConnected() { if (!ws && !reconnectTimer) connect(); }

    function transmit(p) {
      if (ready && p.image) send({ type: 'image', client_id: p.client_id, name: p.image.name, media_type: p.image.media_type, data: p.image.data });
      else if (ready) send({ type: 'message', client_id: p.client_id, text: p.text });
      else if (!ws) connect(); // sent with every other pending message after `welcome`
    }

    function retryLater(id, delay) {
      clearTimeout(retryTimers.get(id));
      retryTimers.set(id, setTimeout(function () {
        retryTimers.delete(id);
        const p = findPending(id);
        if (p) transmit(p);
      }, delay));
    }

    // After every `welcome`: all pending messages again, with their same client ids.
    function flushPending() {
      allPending().forEach(function (p) {
        clearTimeout(retryTimers.get(p.client_id));
        retryTimers.delete(p.client_id);
        renderVisitor(p.client_id, p.text, 'sending');
        transmit(p);
      });
    }

    function onFrame(data) {
      let m;
      try { m = JSON.parse(data); } catch (e) { return; }
      if (!m || typeof m !== 'object') return;
      if (m.type === 'welcome') onWelcome(m);
      else if (m.type === 'ack') onAck(m);
      else if (m.type === 'error') onError(m);
      else if (m.type === 'agent') onAgent(m);
      // "pong": alive() was all it takes.
    }

    function onWelcome(m) {
      if (typeof m.token === 'string' && m.token) setItem('token', m.token);
      if (typeof m.conversation === 'string' && m.conversation !== getItem('conversation')) {
        // Another conversation than the one seq and history belong to: start them afresh, and
        // take the earlier conversation's messages off the page.
        if (getItem('conversation') !== null) {
          ['seq', 'history'].forEach(removeItem);
          baseSeq = lastSeq = -1;
          shownSeqs.clear();
          Array.prototype.slice.call(log.querySelectorAll('[data-omni="message"]')).forEach(function (node) {
            if (node.getAttribute('data-state') !== 'sending') node.remove();
          });
        }
        setItem('conversation', m.conversation);
      }
      ready = true;
      attempt = 0;
      panel.setAttribute('data-verified', m.verified ? 'true' : 'false');
      maxImageBytes = Number(m.max_image_bytes) > 0 ? Number(m.max_image_bytes) : 0;
      imageTypes = Array.isArray(m.image_types) ? m.image_types.filter((t) => typeof t === 'string') : [];
      attachBtn.hidden = !maxImageBytes;
      busyAfterMs = Number(m.busy_after_secs) > 0 ? Number(m.busy_after_secs) * 1000 : 0;
      if (m.open === false) showNotice(S.closed);
      fileInput.setAttribute('accept', imageTypes.join(','));
      setStatus('online');
      flushPending();
    }

    function onAck(m) {
      const id = m.client_id;
      if (typeof id !== 'string') return;
      clearTimeout(retryTimers.get(id));
      retryTimers.delete(id);
      retryCounts.delete(id);
      dropPending(id);
      const b = bubbles.get(id);
      if (b) { setState(b, 'sent', ''); addHistory({ from: 'visitor', client_id: id, text: b.text }); }
      // Waiting for an answer: after busy_after_secs without one, the busy notice.
      if (busyAfterMs && !busyTimer) busyTimer = setTimeout(function () { busyTimer = 0; showNotice(S.busy); }, busyAfterMs);
    }

    function onError(m) {
      const id = typeof m.client_id === 'string' ? m.client_id : null;
      const code = m.code;
      if (!id) {
        console.warn('omni chat:', code, m.message || '');
        if (code === 'rate_limited' || code === 'unavailable') {
          const delay = code === 'rate_limited' && Number(m.retry_after_ms) > 0 ? Number(m.retry_after_ms) : backoff(attempt);
          allPending().forEach(function (p) { retryLater(p.client_id, delay); });
        } else if (code === 'invalid' && !ready) {
          // The `hello` itself was refused (e.g. a token from another account): start afresh.
          ['token', 'seq', 'history'].forEach(removeItem);
          baseSeq = lastSeq = -1;
          shownSeqs.clear();
          lost();
        }
        return;
      }
      const b = bubbles.get(id);
      if (code === 'too_large' || code === 'invalid') {
        // Final: shown as not sent, dropped from pending.
        const image = pendingImages.has(id);
        clearTimeout(retryTimers.get(id));
        retryTimers.delete(id);
        retryCounts.delete(id);
        dropPending(id);
        const reason = code === 'too_large' ? (image ? S.imageTooLarge : S.tooLong) : (image ? S.imageType : '');
        if (b) setState(b, 'failed', reason);
        return;
      }
      if (!findPending(id)) return;
      if (code === 'rate_limited') {
        const after = Number(m.retry_after_ms);
        if (b) setState(b, 'sending', S.rateLimited);
        retryLater(id, after > 0 ? after : BACKOFF_MIN_MS);
      } else {
        // "unavailable" (or anything unknown): nothing was stored, try again after a backoff.
        const n = retryCounts.get(id) || 0;
        retryCounts.set(id, n + 1);
        if (b) setState(b, 'sending', S.retrying);
        retryLater(id, backoff(n));
      }
    }

    function onAgent(m) {
      const seq = Number(m.seq);
      const hasSeq = m.seq != null && Number.isInteger(seq);
      if (hasSeq) {
        if (seq <= baseSeq || shownSeqs.has(seq)) return; // shown once per seq
        shownSeqs.add(seq);
        if (seq > lastSeq) lastSeq = seq;
        if (seq > storedSeq()) setItem('seq', String(seq));
      }
      const entry = {
        from: 'agent', seq: hasSeq ? seq : null, text: m.text == null ? '' : String(m.text),
        agent: typeof m.agent === 'string' ? m.agent : '', at: typeof m.at === 'string' ? m.at : new Date().toISOString()
      };
      renderAgent(entry);
      if (hasSeq) addHistory(entry);
      clearTimeout(busyTimer);
      busyTimer = 0;
      if (notice.getAttribute('data-kind') === 'busy') notice.hidden = true;
      if (panel.hidden) badge.hidden = false;
    }

    // --- offline and busy -----------------------------------------------------------------------
    let busyAfterMs = 0;
    let busyTimer = 0;
    // Says the team is away or busy; asks for an email unless the visitor gave one already.
    function showNotice(text) {
      const email = getItem('contact_email');
      notice.setAttribute('data-kind', text === S.busy ? 'busy' : 'closed');
      noticeText.textContent = email ? text + ' ' + S.emailKept.replace('{email}', email) : text;
      contactForm.hidden = !!email;
      notice.hidden = false;
    }
    // The email goes with every later `hello` (the gateway puts it on each message as where to
    // answer once the visitor has left), and a message tells the agent now.
    contactForm.addEventListener('submit', function (e) {
      e.preventDefault();
      const email = contactInput.value.trim();
      if (!email || !contactInput.checkValidity()) {
        contactInput.setAttribute('aria-invalid', 'true');
        noticeText.textContent = S.emailBad;
        contactInput.focus();
        return;
      }
      contactInput.removeAttribute('aria-invalid');
      setItem('contact_email', email);
      noticeText.textContent = S.emailKept.replace('{email}', email);
      contactForm.hidden = true;
      const p = { client_id: newClientId(), text: S.emailNote.replace('{email}', email) };
      addPending(p);
      renderVisitor(p.client_id, p.text, 'sending');
      // A new `hello` with the email; the note goes out right after its `welcome`.
      if (ws) teardown();
      setStatus('connecting');
      connect();
    });

    // --- sending --------------------------------------------------------------------------------
    function submit() {
      const text = input.value.trim();
      if (!text) { input.focus(); return; }
      let nameChanged = false;
      if (nameShown) {
        // The first message: its name goes with every later `hello`; the field goes away.
        const name = nameInput.value.trim();
        setItem('name', name);
        nameShown = false;
        nameInput.hidden = true;
        nameChanged = (name || null) !== helloName;
      }
      const p = { client_id: newClientId(), text: text };
      addPending(p);
      renderVisitor(p.client_id, p.text, 'sending');
      input.value = '';
      autoGrow();
      input.focus();
      if (nameChanged && ws && ws.readyState === 1) {
        // The open socket's `hello` had no (or another) name: say hello again with it; the
        // message goes out right after the new `welcome`.
        teardown();
        setStatus('connecting');
        connect();
      } else {
        transmit(p);
      }
    }

    // An image the visitor picked, pasted or dropped: checked here first (type, size), then sent
    // as base64 in an `image` frame; it waits in memory for its `ack` like a text message.
    let maxImageBytes = 0;
    let imageTypes = [];
    function sendImage(file) {
      if (!file || !maxImageBytes) return;
      const id = newClientId();
      const label = '\u{1F4CE} ' + (file.name || 'image');
      if (imageTypes.indexOf(file.type) < 0 || file.size > maxImageBytes) {
        setState(renderVisitor(id, label, 'failed'), 'failed', file.size > maxImageBytes ? S.imageTooLarge : S.imageType);
        return;
      }
      const reader = new FileReader();
      reader.addEventListener('load', function () {
        const url = String(reader.result);
        const p = { client_id: id, text: label, image: { name: file.name || 'image', media_type: file.type, data: url.slice(url.indexOf(',') + 1) } };
        pendingImages.set(id, p);
        renderVisitor(id, label, 'sending');
        transmit(p);
      });
      reader.addEventListener('error', function () { setState(renderVisitor(id, label, 'failed'), 'failed', ''); });
      reader.readAsDataURL(file);
    }
    function sendImages(files) { Array.prototype.forEach.call(files || [], sendImage); }

    // The text area grows with its text up to the CSS max-height (CSSOM: allowed by the CSP).
    function autoGrow() {
      if (!input.offsetHeight) return; // hidden: nothing to measure
      input.style.height = 'auto';
      input.style.height = (input.scrollHeight + input.offsetHeight - input.clientHeight) + 'px';
    }

    // --- opening and closing --------------------------------------------------------------------
    function setOpen(open, focusLauncher) {
      panel.hidden = !open;
      launcher.setAttribute('aria-expanded', open ? 'true' : 'false');
      root.classList.toggle('omni-chat-open', open);
      if (open) {
        badge.hidden = true;
        ensureConnected();
        scrollDown();
        input.focus();
      } else if (focusLauncher) {
        launcher.focus();
      }
    }

    launcher.addEventListener('click', () => { setOpen(panel.hidden, false); });
    closeBtn.addEventListener('click', () => { setOpen(false, true); });
    root.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' && !panel.hidden) { e.preventDefault(); setOpen(false, true); }
    });
    form.addEventListener('submit', (e) => { e.preventDefault(); submit(); });
    // Enter sends, Shift+Enter is a new line; Enter that confirms an IME composition does neither.
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) { e.preventDefault(); submit(); }
    });
    input.addEventListener('input', autoGrow);
    attachBtn.addEventListener('click', () => { fileInput.click(); });
    fileInput.addEventListener('change', () => { sendImages(fileInput.files); fileInput.value = ''; });
    input.addEventListener('paste', (e) => {
      const files = e.clipboardData && e.clipboardData.files;
      if (files && files.length && maxImageBytes) { e.preventDefault(); sendImages(files); }
    });
    panel.addEventListener('dragover', (e) => { if (maxImageBytes) e.preventDefault(); });
    panel.addEventListener('drop', (e) => {
      if (!maxImageBytes) return;
      e.preventDefault();
      sendImages(e.dataTransfer && e.dataTransfer.files);
    });
    nameInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); input.focus(); } });
    // Back online: do not wait for the rest of the backoff.
    window.addEventListener('online', () => { if (!ws && reconnectTimer) connect(); });

    // A visitor with a conversation (or unsent messages) connects right away, to get the answers;
    // anyone else when they first open the panel.
    if (getItem('token') || readPending().length) connect();
  }

  if (document.body) start();
  else document.addEventListener('DOMContentLoaded', start);
})();
