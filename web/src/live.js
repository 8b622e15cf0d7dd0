// The one WebSocket client of the live feed (/ws, protocol in docs/live.md): subscribe, hand `change` and
// `positions` messages to the page, keep the last cursor, reconnect with backoff (1, 2, 4 ... 15 s) and
// `resume` from that cursor. Close 4410 (cursor too old) or 1013 (fell behind) -> the page reloads its state
// over REST and subscribes afresh. Positions are not part of the cursor: after a reconnect the page re-reads
// them over REST (onReconnected). The indicator in the top bar shows the state.
import { t } from './i18n.js';
import { getToken } from './auth.js';

const MAX_BACKOFF_S = 15;
const PERMANENT = new Set([4400, 4401, 4403, 4404]); // the server refused the subscription: do not retry

/**
 * @typedef {{type: 'change', kind: 'order'|'eta'|'alert', orderId: string, data: any, cursor: string}} Change
 * @typedef {{driverId: string, vehicleId?: string, lat: number, lng: number, atMs: number, speedKmh?: number}} Position
 * @typedef {{onChange?: (c: Change) => void, onPositions?: (p: Position[]) => void, onReset?: () => any,
 *            onReconnected?: () => any, onRefused?: (code: number, detail: string) => void}} Handlers
 */

let session = null; // the current page's subscription

function indicator(state, detail = '') {
  const el = document.getElementById('live-status');
  if (!el) return;
  el.dataset.state = state;
  el.textContent = t(state === 'connected' ? 'connected' : state === 'reconnecting' ? 'reconnecting' : 'idle');
  el.title = detail;
}

class Session {
  /** @param {object[]} interests @param {Handlers} handlers */
  constructor(interests, handlers) {
    this.interests = interests;
    this.handlers = handlers;
    this.cursor = null;
    this.attempt = 0;
    this.stopped = false;
    this.ws = null;
    this.timer = null;
    this.everConnected = false;
    this.open();
  }

  open() {
    if (this.stopped) return;
    indicator('reconnecting');
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/ws?token=${encodeURIComponent(getToken() || '')}`);
    this.ws = ws;
    let lastError = '';
    ws.onopen = () => {
      const msg = { subscribe: this.interests };
      if (this.cursor) msg.resume = this.cursor;
      ws.send(JSON.stringify(msg));
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg.type === 'subscribed') {
        const again = this.everConnected;
        this.attempt = 0;
        this.everConnected = true;
        this.cursor = msg.cursor || this.cursor;
        indicator('connected');
        if (again) this.handlers.onReconnected?.();
      } else if (msg.type === 'change') {
        try { this.handlers.onChange?.(msg); } catch (err) { console.warn('live change not applied', err); }
        this.cursor = msg.cursor || this.cursor;
      } else if (msg.type === 'position') {
        this.cursor = msg.cursor || this.cursor;
      } else if (msg.type === 'positions') {
        this.handlers.onPositions?.(msg.positions || []);
      } else if (msg.type === 'error') {
        lastError = msg.detail || '';
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws || this.stopped) return;
      const detail = lastError || ev.reason || `closed ${ev.code}`;
      if (ev.code === 4401) {
        sessionStorage.setItem('kuailv.loginReason', `live feed: ${detail}`);
        location.hash = '#/login';
        return;
      }
      if (PERMANENT.has(ev.code)) {
        indicator('idle', `${ev.code} ${detail}`);
        this.handlers.onRefused?.(ev.code, detail);
        return;
      }
      if (ev.code === 4410 || ev.code === 1013) { // behind: reload over REST, subscribe without a cursor
        this.cursor = null;
        Promise.resolve(this.handlers.onReset?.()).catch((err) => console.warn('reload failed', err));
      }
      this.retry(detail);
    };
  }

  retry(detail) {
    const delay = Math.min(MAX_BACKOFF_S, 2 ** this.attempt);
    this.attempt += 1;
    indicator('reconnecting', `${detail}; retry in ${delay} s`);
    this.timer = setTimeout(() => this.open(), delay * 1000);
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws && this.ws.readyState <= 1) this.ws.close(1000, 'page left');
    indicator('idle');
  }
}

/**
 * Follows `interests` (e.g. [{alerts: true}, {fleet: true}]) for the current page, replacing the previous
 * page's subscription. Returns a function that stops it.
 * @param {object[]} interests @param {Handlers} handlers
 */
export function follow(interests, handlers) {
  session?.close();
  session = new Session(interests, handlers);
  const mine = session;
  return () => { mine.close(); if (session === mine) session = null; };
}

/** For tests and the console: the current session's cursor and socket. */
export const liveDebug = () => ({ cursor: session?.cursor ?? null, state: document.getElementById('live-status')?.dataset.state });
