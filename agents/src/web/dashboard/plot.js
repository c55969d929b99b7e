// A small rolling line plot on a canvas: one series, a time window, auto-scaled, crisp on
// high-density screens. Written for the wattchain dashboard (no library, no network).
"use strict";

class Plot {
  // canvas: a <canvas>; opts: { color, unit, span (ms shown), digits }
  constructor(canvas, opts) {
    this.canvas = canvas;
    this.color = opts.color;
    this.unit = opts.unit;
    this.span = opts.span || 120000;
    this.digits = opts.digits ?? 1;
    this.points = []; // [t (ms), value], oldest first
    this.max = opts.max || 2000;
    this.pending = false;
    new ResizeObserver(() => this.schedule()).observe(canvas);
  }

  push(t, v) {
    const last = this.points[this.points.length - 1];
    if (last && t < last[0]) return; // out of order: already drawn past it
    this.points.push([t, v]);
    if (this.points.length > this.max) this.points.splice(0, this.points.length - this.max);
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(c.clientWidth * dpr));
    const h = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) {
      c.width = w;
      c.height = h;
    }
    const g = c.getContext("2d");
    g.clearRect(0, 0, w, h);
    const now = this.points.length ? Math.max(Date.now(), this.points[this.points.length - 1][0]) : Date.now();
    // Until the window is full, show what there is (at least 20 s), not a mostly empty plot.
    const have = this.points.length ? now - this.points[0][0] : 0;
    const span = Math.min(this.span, Math.max(20000, Math.ceil(have / 10000) * 10000));
    const t0 = now - span;
    const shown = this.points.filter((p) => p[0] >= t0 - 2000);
    const font = 11 * dpr;
    g.font = `${font}px system-ui, sans-serif`;
    const left = 58 * dpr, right = 8 * dpr, top = 8 * dpr, bottom = 18 * dpr;
    const pw = w - left - right, ph = h - top - bottom;
    if (pw <= 0 || ph <= 0) return;

    let lo = Infinity, hi = -Infinity;
    for (const [, v] of shown) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { const m = Math.abs(hi) * 0.01 || 0.5; lo -= m; hi += m; }
    const pad = (hi - lo) * 0.12;
    lo -= pad; hi += pad;
    const y = (v) => top + ph - ((v - lo) / (hi - lo)) * ph;
    const x = (t) => left + ((t - t0) / span) * pw;

    // Grid and scale.
    g.strokeStyle = "rgba(148, 163, 184, 0.16)";
    g.fillStyle = "rgba(203, 213, 225, 0.75)";
    g.lineWidth = 1 * dpr;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let k = 0; k <= 4; k++) {
      const v = lo + ((hi - lo) * k) / 4;
      const yy = Math.round(y(v)) + 0.5;
      g.beginPath(); g.moveTo(left, yy); g.lineTo(w - right, yy); g.stroke();
      g.fillText(formatValue(v, this.digits), left - 6 * dpr, yy);
    }
    g.textAlign = "center";
    g.textBaseline = "alphabetic";
    const step = span / 4;
    for (let k = 0; k <= 4; k++) {
      const t = t0 + step * k;
      const label = k === 4 ? "now" : `-${Math.round((span - step * k) / 1000)} s`;
      g.fillText(label, Math.min(Math.max(x(t), left + 12 * dpr), w - right - 12 * dpr), h - 4 * dpr);
    }
    if (shown.length === 0) {
      g.fillText("waiting for data…", left + pw / 2, top + ph / 2);
      return;
    }

    // Area under the line, then the line, then the latest point.
    g.save();
    g.beginPath(); g.rect(left, top, pw, ph); g.clip();
    const grad = g.createLinearGradient(0, top, 0, top + ph);
    grad.addColorStop(0, this.color + "55");
    grad.addColorStop(1, this.color + "00");
    g.beginPath();
    g.moveTo(x(shown[0][0]), top + ph);
    for (const [t, v] of shown) g.lineTo(x(t), y(v));
    g.lineTo(x(shown[shown.length - 1][0]), top + ph);
    g.closePath();
    g.fillStyle = grad;
    g.fill();
    g.beginPath();
    shown.forEach(([t, v], i) => (i ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
    g.strokeStyle = this.color;
    g.lineWidth = 2 * dpr;
    g.lineJoin = "round";
    g.stroke();
    const [lt, lv] = shown[shown.length - 1];
    g.beginPath(); g.arc(x(lt), y(lv), 3.5 * dpr, 0, 2 * Math.PI);
    g.fillStyle = this.color; g.fill();
    g.restore();
    c.dataset.points = String(shown.length);
    c.dataset.last = String(lv);
  }
}

function formatValue(v, digits) {
  const a = Math.abs(v);
  if (a >= 10000) return (v / 1000).toFixed(1) + "k";
  return v.toFixed(a >= 100 ? Math.min(digits, 1) : digits);
}

window.Plot = Plot;
window.formatValue = formatValue;
