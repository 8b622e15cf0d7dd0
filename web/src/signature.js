// The signature pad: a canvas the receiver draws on (mouse, pen or finger), and its reference
// "sig:sha256:<hex of the PNG data URL>" (the image itself stays on the device; the order records the hash).
import { h } from './ui.js';
import { t } from './i18n.js';
import { sha256 } from './sha256.js';

/** @returns {{el: HTMLElement, isEmpty: () => boolean, dataUrl: () => string, clear: () => void}} */
export function signaturePad(id = 'sig') {
  const canvas = h('canvas', { id, class: 'sig-canvas', width: 600, height: 200, role: 'img',
    'aria-label': t('drawSignature') });
  const ctx = canvas.getContext('2d');
  let drawing = false; let empty = true;
  const at = (ev) => {
    const r = canvas.getBoundingClientRect();
    return [(ev.clientX - r.left) * (canvas.width / r.width), (ev.clientY - r.top) * (canvas.height / r.height)];
  };
  const reset = () => {
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = '#111'; ctx.lineWidth = 3; ctx.lineCap = 'round'; ctx.lineJoin = 'round';
    empty = true;
  };
  reset();
  canvas.addEventListener('pointerdown', (ev) => {
    drawing = true; canvas.setPointerCapture(ev.pointerId);
    const [x, y] = at(ev); ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + 0.1, y + 0.1); ctx.stroke();
    empty = false; ev.preventDefault();
  });
  canvas.addEventListener('pointermove', (ev) => {
    if (!drawing) return;
    const [x, y] = at(ev); ctx.lineTo(x, y); ctx.stroke(); ev.preventDefault();
  });
  const end = () => { drawing = false; };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  const el = h('div', { class: 'sig-pad' },
    h('span', { class: 'label', id: `${id}-label` }, t('drawSignature')), canvas,
    h('button', { type: 'button', class: 'btn small', onclick: reset }, t('clear')));
  return { el, isEmpty: () => empty, dataUrl: () => canvas.toDataURL('image/png'), clear: reset };
}

/** "sig:sha256:<hex>" of a string (the PNG data URL). */
export async function signatureRef(dataUrl) {
  const bytes = new TextEncoder().encode(dataUrl);
  const digest = globalThis.crypto?.subtle ? new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))
    : sha256(bytes); // crypto.subtle exists only in secure contexts (https or localhost)
  return `sig:sha256:${Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}
