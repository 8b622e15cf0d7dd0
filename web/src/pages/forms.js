// The command forms: sign for an order (driver) / confirm receipt (customer) and report an exception. Both go
// through the API's commands (POST /orders/{id}/delivery, /exceptions); the answer or the refusal is shown.
import { api, enc } from '../api.js';
import { REASONS, reasonName, statusName, t } from '../i18n.js';
import { signaturePad, signatureRef } from '../signature.js';
import { errorPanel, fill, h } from '../ui.js';

/** The browser's position (3 s at most), else null. */
function geolocation() {
  return new Promise((resolve) => {
    if (!navigator.geolocation) { resolve(null); return; }
    const timer = setTimeout(() => resolve(null), 3000);
    navigator.geolocation.getCurrentPosition(
      (p) => { clearTimeout(timer); resolve({ lat: p.coords.latitude, lng: p.coords.longitude }); },
      () => { clearTimeout(timer); resolve(null); }, { timeout: 3000, maximumAge: 60000 });
  });
}

/** Where the signing happens: this device's position, else the van's last position, else the destination. */
export async function signingLocation(order) {
  const here = await geolocation();
  if (here) return { ...here, source: t('gps') };
  const driverId = order.driverInfo?.driverId;
  if (driverId) {
    try {
      const p = await api(`/drivers/${enc(driverId)}/position`);
      return { lat: p.lat, lng: p.lng, source: t('vanPos') };
    } catch { /* fall through to what the order view has */ }
  }
  const loc = order.driverInfo?.location || order.destination;
  return loc ? { lat: loc.lat, lng: loc.lng, source: t('vanPos') } : null;
}

let formSeq = 0;

/**
 * The signing form. mode 'driver': receiver name + signature; 'customer': the same, titled "Confirm receipt".
 * @param {any} order @param {{mode?: 'driver'|'customer', onDone?: (answer: any) => void}} opts
 */
export function signForm(order, { mode = 'driver', onDone } = {}) {
  const id = `sign-${++formSeq}`;
  const pad = signaturePad(`${id}-sig`);
  const nameInput = h('input', { id: `${id}-name`, name: 'receiver_name', required: true, maxlength: 100,
    autocomplete: 'name' });
  const out = h('div', { class: 'form-result', role: 'status' });
  const submit = h('button', { type: 'submit', class: 'btn primary' }, mode === 'customer' ? t('confirmReceipt') : t('submit'));
  const form = h('form', { class: 'cmd-form', testid: 'sign-form', onsubmit: async (ev) => {
    ev.preventDefault();
    if (pad.isEmpty()) { fill(out, h('p', { class: 'form-error' }, t('emptySignature'))); return; }
    submit.disabled = true;
    try {
      const location = await signingLocation(order);
      if (!location) throw new Error('no location: allow this device to share its position');
      const body = { receiver_name: nameInput.value.trim(), signature_ref: await signatureRef(pad.dataUrl()),
        location: { lat: location.lat, lng: location.lng } };
      const answer = await api(`/orders/${enc(order.orderId)}/delivery`, { method: 'POST', body });
      fill(out, h('p', { class: 'ok' }, t('sent', { s: statusName(answer.status) })),
        h('p', { class: 'muted small' }, t('locationFrom', { src: location.source })));
      form.dataset.done = 'true';
      onDone?.(answer);
    } catch (err) {
      fill(out, errorPanel(err));
      submit.disabled = false;
    }
  } },
  h('h3', {}, mode === 'customer' ? t('confirmReceipt') : `${t('sign')} · ${order.orderId}`),
  h('label', { for: nameInput.id }, t('receiverName')), nameInput, pad.el, submit, out);
  return form;
}

/** The exception report: reason code and description (location as for signing). */
export function exceptionForm(order, { onDone } = {}) {
  const id = `exc-${++formSeq}`;
  const select = h('select', { id: `${id}-reason`, name: 'reason_code', required: true },
    Object.keys(REASONS).map((code) => h('option', { value: code }, reasonName(code))));
  const text = h('textarea', { id: `${id}-desc`, name: 'description', required: true, maxlength: 500, rows: 3 });
  const out = h('div', { class: 'form-result', role: 'status' });
  const submit = h('button', { type: 'submit', class: 'btn danger' }, t('submit'));
  const form = h('form', { class: 'cmd-form', testid: 'exception-form', onsubmit: async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    try {
      const location = await signingLocation(order);
      if (!location) throw new Error('no location: allow this device to share its position');
      const answer = await api(`/orders/${enc(order.orderId)}/exceptions`, { method: 'POST', body: {
        reason_code: select.value, description: text.value.trim(), location: { lat: location.lat, lng: location.lng } } });
      fill(out, h('p', { class: 'ok' }, t('sent', { s: statusName(answer.status) })));
      form.dataset.done = 'true';
      onDone?.(answer);
    } catch (err) {
      fill(out, errorPanel(err));
      submit.disabled = false;
    }
  } },
  h('h3', {}, `${t('reportException')} · ${order.orderId}`),
  h('label', { for: select.id }, t('reasonCode')), select,
  h('label', { for: text.id }, t('description')), text, submit, out);
  return form;
}
