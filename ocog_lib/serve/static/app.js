// The map page of `ocog serve`: band math reduced over time, drawn as XYZ tiles with ONE
// colour stretch per view, and a point's time series on click. Plain JS and the vendored
// Leaflet; every request goes to this server (relative URLs), so the page works offline.
//
// Per view (after a move, or Apply): GET stretch?bbox=... (the 2nd-98th percentiles of the
// reduced expression over the view), then every tile with that rescale=lo,hi. A click:
// GET point/{lon},{lat} and an inline SVG chart. Errors are the server's JSON
// {"error", "input", "cause"}, shown as they come. With "find them" on, a click also asks
// similar.geojson?lon=&lat=&k= and draws the query's H3 cell (outlined) and the k most
// similar cells (filled, stronger for better ranks), listed best first in the panel.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    info: null, map: null, layer: null, stale: [], marker: null, similar: null, similarSeq: 0,
    seq: 0, // the newest view request; older answers are dropped
    params: null, // the query the drawn tiles use (without the stretch)
    rescale: null, url: null, errorShown: null,
  };

  class ServerError extends Error {
    constructor(status, body, url) {
      const text = body && body.error
        ? `${body.error}: ${body.input ? body.input + ": " : ""}${body.cause}`
        : `HTTP ${status}`;
      super(`${text} (HTTP ${status})`);
      this.status = status;
      this.body = body;
      this.url = url;
    }
  }

  async function getJSON(url) {
    const reply = await fetch(url);
    let body = null;
    try { body = await reply.json(); } catch (_) { body = null; }
    if (!reply.ok) throw new ServerError(reply.status, body, url);
    return body;
  }

  function showError(err) {
    const box = $("error");
    box.textContent = err instanceof ServerError ? err.message : `page error: ${err}`;
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  function setStatus(text) { $("status").textContent = text; }

  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  function query(params) {
    const out = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== null && v !== undefined && v !== "") out.set(k, v);
    }
    return out.toString();
  }

  // What the form asks for now (the stretch and the tiles share it).
  function formParams() {
    const reducer = $("reducer").value;
    return {
      expression: $("expression").value.trim(),
      reducer: reducer,
      p: reducer === "percentile" ? $("p").value : null,
      start: $("start").value,
      end: $("end").value,
      max_cloud: $("max_cloud").value,
    };
  }

  function viewBbox() {
    const b = state.map.getBounds();
    const clamp = (v, lim) => Math.max(-lim, Math.min(lim, v));
    return [clamp(b.getWest(), 180), clamp(b.getSouth(), 85.05),
            clamp(b.getEast(), 180), clamp(b.getNorth(), 85.05)]
      .map((v) => v.toFixed(6)).join(",");
  }

  async function start() {
    let info;
    try {
      info = await getJSON("info");
    } catch (err) {
      showError(err);
      return;
    }
    state.info = info;
    fillControls(info);
    // no fade: a new layer's tiles show at once over the old layer's, which then goes
    const map = L.map("map", { minZoom: info.minzoom, maxZoom: info.maxzoom, zoomSnap: 0.25,
                               fadeAnimation: false });
    state.map = map;
    map.attributionControl.setPrefix("Leaflet");
    map.attributionControl.addAttribution(`ocog serve: ${info.stack}`);
    const [w, s, e, n] = info.bounds;
    state.bounds = L.latLngBounds([s, w], [n, e]);
    L.rectangle(state.bounds, { color: "#5b6675", weight: 1, fill: false, dashArray: "4 3",
                                interactive: false }).addTo(map);
    map.fitBounds(state.bounds);
    map.on("moveend", refresh);
    map.on("click", (ev) => {
      showSeries(ev.latlng);
      if ($("similar-on").checked) showSimilar(ev.latlng);
    });
    $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); refresh(); });
    $("reducer").addEventListener("change", () => {
      $("p-box").hidden = $("reducer").value !== "percentile";
    });
    refresh();
  }

  function fillControls(info) {
    $("stack-name").textContent = `${info.stack}, ${info.scenes.length} scenes`;
    $("expression").value = info.default_expression;
    const names = info.bands.concat(Object.keys(info.aliases));
    $("bands").textContent = `bands: ${names.join(", ")}`;
    for (const r of info.reducers) $("reducer").add(new Option(r, r, r === "median", r === "median"));
    for (const c of Object.keys(info.colormaps)) $("colormap").add(new Option(c, c));
    const days = info.scenes.map((s) => s.datetime.slice(0, 10)).sort();
    if (days.length) {
      $("start").value = days[0];
      $("end").value = days[days.length - 1];
    }
    $("colormap").addEventListener("change", refresh);
  }

  // One stretch for the whole view, then every tile with it.
  async function refresh() {
    const seq = ++state.seq;
    const params = formParams();
    setStatus("computing the view's stretch…");
    let stretch;
    try {
      stretch = await getJSON(`stretch?${query({ ...params, bbox: viewBbox() })}`);
    } catch (err) {
      if (seq === state.seq) { setStatus(""); showError(err); }
      return;
    }
    if (seq !== state.seq) return;
    clearError();
    const sameQuery = state.params && query(state.params) === query(params);
    const rescale = stretch.rescale
      || (sameQuery && state.rescale) || state.info.default_rescale;
    drawTiles(params, rescale);
    drawLegend(rescale, stretch, params);
    if (!sameQuery && state.marker) showSeries(state.marker.getLatLng());
  }

  function drawTiles(params, rescale) {
    if (!params || !rescale) return;
    const colormap = $("colormap").value;
    const url = `tiles/${state.info.tms}/{z}/{x}/{y}.png?`
      + query({ ...params, rescale: rescale.join(","), colormap });
    state.params = params;
    state.rescale = rescale;
    if (url === state.url) return;
    state.url = url;
    state.errorShown = null;
    document.body.dataset.tiles = "loading";
    // A new layer over the old one, which goes once the new one has loaded: no blank map
    // between two stretches (and Leaflet 1.9's setUrl asks fractional-zoom tiles).
    const layer = L.tileLayer(url, {
      bounds: state.bounds, minZoom: state.info.minzoom, maxZoom: state.info.maxzoom,
      tileSize: state.info.tile_size, keepBuffer: 1,
    });
    if (state.layer) state.stale.push(state.layer);
    state.layer = layer;
    layer.on("loading", () => {
      if (layer !== state.layer) return;
      document.body.dataset.tiles = "loading";
      setStatus("loading tiles…");
    });
    layer.on("load", () => {
      if (layer !== state.layer) return;
      for (const old of state.stale.splice(0)) state.map.removeLayer(old);
      document.body.dataset.tiles = "loaded";
      setStatus("tiles loaded");
    });
    layer.on("tileerror", (ev) => { if (layer === state.layer) tileError(ev.tile.src); });
    layer.addTo(state.map);
  }

  // An <img> cannot read an error body: ask once more for the first failed tile's JSON.
  async function tileError(src) {
    if (state.errorShown === state.url) return;
    state.errorShown = state.url;
    try {
      await getJSON(src);
    } catch (err) {
      showError(err);
    }
  }

  function drawLegend(rescale, stretch, params) {
    const stops = state.info.colormaps[$("colormap").value];
    $("legend-bar").style.background = `linear-gradient(to right, ${stops.join(", ")})`;
    $("legend-lo").textContent = fmt(rescale[0]);
    $("legend-mid").textContent = fmt((rescale[0] + rescale[1]) / 2);
    $("legend-hi").textContent = fmt(rescale[1]);
    const what = `${params.reducer}${params.p ? " p" + params.p : ""} of ${params.expression}`;
    $("legend-note").textContent = stretch.rescale
      ? `${what}: percentiles ${stretch.percentiles[0]}-${stretch.percentiles[1]} of the `
        + `view's ${stretch.pixels} valid pixels (${stretch.scenes.length} scenes), `
        + "one stretch for all tiles"
      : `${what}: ${stretch.why}; stretch kept at ${fmt(rescale[0])}..${fmt(rescale[1])}.`;
    $("legend").hidden = false;
    document.body.dataset.stretch = rescale.join(",");
  }

  async function showSeries(latlng) {
    const params = state.params || formParams();
    const lon = latlng.lng.toFixed(6);
    const lat = latlng.lat.toFixed(6);
    if (!state.marker) {
      state.marker = L.circleMarker(latlng, { radius: 5, color: "#fff", weight: 2,
                                              fillColor: "#d6336c", fillOpacity: 1 });
      state.marker.addTo(state.map);
    } else {
      state.marker.setLatLng(latlng);
    }
    $("chart").innerHTML = `<p class="hint">time series at ${lon}, ${lat}…</p>`;
    const { expression, start, end, max_cloud } = params;
    try {
      const rows = await getJSON(`point/${lon},${lat}?${query({ expression, start, end, max_cloud })}`);
      clearError();
      drawChart(rows, lon, lat, expression);
    } catch (err) {
      $("chart").innerHTML = "";
      showError(err);
    }
  }

  // The k cells most like the clicked patch: hexagons from the server (h3's boundaries).
  async function showSimilar(latlng) {
    const seq = ++state.similarSeq;
    const k = $("similar-k").value || "10";
    const lon = latlng.lng.toFixed(6), lat = latlng.lat.toFixed(6);
    document.body.dataset.similar = "loading";
    $("similar-note").textContent = `finding the ${k} cells most like ${lon}, ${lat}…`;
    let doc;
    try {
      doc = await getJSON(`similar.geojson?${query({ lon, lat, k })}`);
    } catch (err) {
      if (seq !== state.similarSeq) return;
      clearSimilar();
      $("similar-note").textContent = err instanceof ServerError ? err.message : String(err);
      document.body.dataset.similar = "error";
      return;
    }
    if (seq !== state.similarSeq) return;
    clearSimilar();
    drawSimilar(doc);
  }

  function clearSimilar() {
    if (state.similar) state.map.removeLayer(state.similar);
    state.similar = null;
    $("similar-list").innerHTML = "";
  }

  function drawSimilar(doc) {
    const matches = doc.features.filter((f) => f.properties.role === "match");
    const style = (f) => f.properties.role === "query"
      ? { className: "similar-query", color: "#d6336c", weight: 2.5, fill: false }
      : { className: "similar-cell", color: "#1d2430", weight: 1, fillColor: "#f59f00",
          fillOpacity: 0.85 - 0.55 * (f.properties.rank - 1) / Math.max(1, matches.length - 1) };
    state.similar = L.geoJSON(doc, {
      style,
      onEachFeature: (f, layer) => layer.bindTooltip(describe(f.properties)),
    }).addTo(state.map);
    for (const f of matches) {
      const item = document.createElement("li");
      item.dataset.cell = f.id;
      item.textContent = describe(f.properties);
      item.addEventListener("click", () => {
        state.map.panTo([f.properties.lat, f.properties.lon]);
      });
      $("similar-list").appendChild(item);
    }
    $("similar-note").textContent = `${matches.length} cells like ${doc.features[0].id} `
      + `(${doc.dataset}, model ${doc.model_id}, ${doc.method} over ${doc.rows} vectors)`;
    document.body.dataset.similar = "loaded";
  }

  function describe(p) {
    const what = p.label_name || (p.label >= 0 ? `class ${p.label}` : "no label");
    if (p.role === "query") return `query cell ${p.cell}: ${what}`;
    return `${p.rank}. ${fmt(p.score)}: ${what}, ${fmt(p.distance_km)} km away`;
  }

  const SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Dates on x, values on y; a scene without a value (masked, no data) is a red tick below.
  function drawChart(rows, lon, lat, expression) {
    const W = 276, H = 150, L0 = 44, R0 = 8, T0 = 8, B0 = 30;
    const times = rows.map((r) => Date.parse(r.datetime));
    const valid = rows.filter((r) => r.value !== null);
    const box = $("chart");
    box.innerHTML = "";
    box.dataset.scenes = rows.length;
    box.dataset.points = valid.length;
    const title = document.createElement("p");
    title.className = "hint";
    title.textContent = `${expression} at ${lon}, ${lat}: ${valid.length} of ${rows.length} `
      + "scenes with a value";
    box.appendChild(title);
    if (!rows.length) return;
    const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "series" });
    const t0 = Math.min(...times), t1 = Math.max(...times);
    const vs = valid.map((r) => r.value);
    let v0 = vs.length ? Math.min(...vs) : 0, v1 = vs.length ? Math.max(...vs) : 1;
    if (v1 === v0) { v0 -= 0.5; v1 += 0.5; }
    const pad = (v1 - v0) * 0.08;
    v0 -= pad; v1 += pad;
    const x = (t) => L0 + (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0)) * (W - L0 - R0);
    const y = (v) => T0 + (1 - (v - v0) / (v1 - v0)) * (H - T0 - B0);
    for (const v of [v0 + pad, (v0 + v1) / 2, v1 - pad]) {
      svg.appendChild(el("line", { class: "grid", x1: L0, x2: W - R0, y1: y(v), y2: y(v) }));
      svg.appendChild(el("text", { x: L0 - 4, y: y(v) + 3, "text-anchor": "end" }, fmt(v)));
    }
    svg.appendChild(el("line", { class: "axis", x1: L0, x2: W - R0, y1: H - B0, y2: H - B0 }));
    svg.appendChild(el("line", { class: "axis", x1: L0, x2: L0, y1: T0, y2: H - B0 }));
    const day = (t) => new Date(t).toISOString().slice(0, 10);
    svg.appendChild(el("text", { x: L0, y: H - B0 + 22, "text-anchor": "start" }, day(t0)));
    svg.appendChild(el("text", { x: W - R0, y: H - B0 + 22, "text-anchor": "end" }, day(t1)));
    const line = valid.map((r) => `${x(Date.parse(r.datetime))},${y(r.value)}`).join(" ");
    svg.appendChild(el("polyline", { class: "ts-line", points: line }));
    rows.forEach((r, i) => {
      const cx = x(times[i]);
      if (r.value === null) {
        const tick = el("line", { class: "ts-masked", x1: cx, x2: cx, y1: H - B0 + 2,
                                  y2: H - B0 + 10 });
        tick.appendChild(el("title", {}, `${r.datetime.slice(0, 10)}: no value (${r.scene})`));
        svg.appendChild(tick);
        return;
      }
      const dot = el("circle", { class: "ts-point", cx, cy: y(r.value), r: 3 });
      dot.appendChild(el("title", {}, `${r.datetime.slice(0, 10)}: ${fmt(r.value)} (${r.scene})`));
      svg.appendChild(dot);
    });
    box.appendChild(svg);
  }

  window.ocogMap = state; // for a console (and the browser test): the page's state
  start().catch(showError);
})();
