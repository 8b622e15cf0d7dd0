// Small DOM helpers and the shared error panels (refusal, not found, unavailable, failed).
import { ApiError } from './api.js';
import { t } from './i18n.js';

/**
 * h('div', {class: 'x', onclick: fn, dataset: {testid: 'y'}}, 'text', child, [more]) -> Element
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'class') el.className = v;
    else if (k === 'testid') el.setAttribute('data-testid', v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces el's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A titled card; returns [card, body]. */
export function card(title, { testid, cls = '' } = {}) {
  const body = h('div', { class: 'card-body' });
  const el = h('section', { class: `card ${cls}`, testid }, h('h2', {}, title), body);
  return [el, body];
}

/** Is this error an endpoint that does not exist (yet) on this service? */
const missingEndpoint = (err) => err instanceof ApiError && (err.status === 405 || err.status === 501
  || (err.status === 404 && /^not found$/i.test(err.detail)));

/**
 * The panel for a failed request: a refusal (403) with the API's reason, "not found" (404), "unavailable" for
 * an endpoint this service does not have yet or a store that did not answer (503), else what failed. A 401
 * sends the viewer to #/login with the reason.
 */
export function errorPanel(err, { notFound } = {}) {
  if (!(err instanceof ApiError)) {
    console.warn(err);
    return h('div', { class: 'panel-error', role: 'alert' }, `${t('failed')}: ${err?.message ?? err}`);
  }
  const where = h('code', { class: 'where' }, `${err.method} ${err.path} → ${err.status || t('unavailable')}`);
  if (err.status === 401) {
    sessionStorage.setItem('kuailv.loginReason', err.detail);
    location.hash = '#/login';
    return h('div', { class: 'panel-error' }, t('needLogin'));
  }
  if (err.status === 403) {
    return h('div', { class: 'refusal', role: 'alert', testid: 'refusal' },
      h('h3', {}, t('refused')), h('p', { class: 'reason' }, err.detail), where);
  }
  if (missingEndpoint(err) || err.status === 503 || err.status === 0) {
    return h('div', { class: 'unavailable', role: 'status', testid: 'unavailable' },
      h('strong', {}, t('unavailable')), h('p', {}, err.status === 503 || err.status === 0 ? err.detail
        : t('unavailableHelp')), where);
  }
  if (err.status === 404) {
    return h('div', { class: 'not-found', role: 'alert', testid: 'not-found' },
      h('h3', {}, t('notFound')), h('p', {}, notFound || err.detail), where);
  }
  return h('div', { class: 'panel-error', role: 'alert' }, h('strong', {}, t('failed')), h('p', {}, err.detail), where);
}

/** Runs load() and fills body with its result, or with the error panel. */
export async function loadInto(body, load, opts) {
  try {
    await load();
  } catch (err) {
    fill(body, errorPanel(err, opts));
  }
}

/** A status badge coloured by status. */
export function badge(text, cls, attrs = {}) {
  return h('span', { class: `badge ${cls}`, ...attrs }, text);
}

/** Calls fn every ms while the page is shown; returns a stop function. */
export function every(ms, fn) {
  const id = setInterval(fn, ms);
  return () => clearInterval(id);
}
