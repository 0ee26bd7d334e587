// zoo report: sortable tables and training curves with a hover read-out. Plain DOM, no library.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#59636e"];

  function cellValue(row, col) {
    var cell = row.cells[col];
    var raw = cell.getAttribute("data-value");
    if (raw !== null && raw !== "" && !isNaN(Number(raw))) return Number(raw);
    return cell.textContent.trim().toLowerCase();
  }

  // Sort a table's body rows by one column; numbers numerically, text alphabetically.
  function sortTable(table, col, dir) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, col), y = cellValue(b, col);
      var order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return dir === "asc" ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("aria-sort");
    heads[col].setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
    table.setAttribute("data-sorted", heads[col].textContent.trim() + " " + dir);
  }

  function makeSortable(table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.title = "sort by " + th.textContent.trim();
      th.addEventListener("click", function () {
        var dir = th.getAttribute("aria-sort") === "ascending" ? "desc" : "asc";
        sortTable(table, col, dir);
      });
    });
    var initial = table.getAttribute("data-sort");
    if (initial) {
      var parts = initial.split(" ");
      sortTable(table, Number(parts[0]), parts[1] || "asc");
    }
  }

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(v) {
    if (typeof v !== "number") return String(v);
    return Math.abs(v) > 0 && Math.abs(v) < 0.001 ? v.toExponential(2) : v.toFixed(4);
  }

  // One panel: a line per metric against the epoch, and a read-out of the nearest epoch on hover.
  function drawPanel(box, title, keys, history) {
    var W = 340, H = 230, L = 52, R = 10, T = 24, B = 34;
    var points = keys.map(function (key) {
      return history.filter(function (r) { return typeof r[key] === "number" && typeof r.epoch === "number"; })
        .map(function (r) { return [r.epoch, r[key]]; });
    });
    var all = [].concat.apply([], points);
    if (!all.length) return;
    var xs = all.map(function (p) { return p[0]; }), ys = all.map(function (p) { return p[1]; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { var pad = Math.abs(y0) * 0.1 || 0.5; y0 -= pad; y1 += pad; }
    var sx = function (x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    var sy = function (y) { return T + (1 - (y - y0) / (y1 - y0)) * (H - T - B); };
    var chart = document.createElement("div");
    chart.className = "chart";
    var svg = el("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title }, null);
    chart.appendChild(svg);
    el("text", { x: L, y: 16, "font-size": 13, "font-weight": "bold" }, svg).textContent = title;
    el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }, svg);
    el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }, svg);
    [y0, (y0 + y1) / 2, y1].forEach(function (v) {
      el("text", { x: L - 4, y: sy(v) + 4, "font-size": 10, "text-anchor": "end" }, svg).textContent = fmt(v).replace(/0+$/, "").replace(/\.$/, "");
    });
    [x0, x1].forEach(function (v) {
      el("text", { x: sx(v), y: H - B + 14, "font-size": 10, "text-anchor": "middle" }, svg).textContent = String(v);
    });
    el("text", { x: (L + W - R) / 2, y: H - 6, "font-size": 11, "text-anchor": "middle" }, svg).textContent = "epoch";
    points.forEach(function (pts, i) {
      if (!pts.length) return;
      var color = COLORS[i % COLORS.length];
      el("polyline", {
        points: pts.map(function (p) { return sx(p[0]) + "," + sy(p[1]); }).join(" "),
        fill: "none", stroke: color, "stroke-width": 2, "class": "series", "data-key": keys[i]
      }, svg);
      if (pts.length < 40) pts.forEach(function (p) { el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: color }, svg); });
      var ly = T + 4 + 14 * i;
      el("rect", { x: W - R - 120, y: ly - 8, width: 10, height: 3, fill: color }, svg);
      el("text", { x: W - R - 106, y: ly - 4, "font-size": 10 }, svg).textContent = keys[i];
    });
    var cursor = el("line", { y1: T, y2: H - B, stroke: "#888", "stroke-dasharray": "3,3", visibility: "hidden" }, svg);
    var tip = document.createElement("div");
    tip.className = "tip";
    chart.appendChild(tip);
    var epochs = xs.filter(function (v, i, a) { return a.indexOf(v) === i; }).sort(function (a, b) { return a - b; });
    svg.addEventListener("mousemove", function (event) {
      var rect = svg.getBoundingClientRect();
      var x = x0 + (event.clientX - rect.left - L) / (W - L - R) * (x1 - x0);
      var epoch = epochs.reduce(function (best, e) { return Math.abs(e - x) < Math.abs(best - x) ? e : best; }, epochs[0]);
      var lines = ["epoch " + epoch];
      keys.forEach(function (key, i) {
        var hit = points[i].filter(function (p) { return p[0] === epoch; })[0];
        if (hit) lines.push(key + " " + fmt(hit[1]));
      });
      cursor.setAttribute("x1", sx(epoch));
      cursor.setAttribute("x2", sx(epoch));
      cursor.setAttribute("visibility", "visible");
      tip.textContent = "";
      lines.forEach(function (line, i) {
        if (i) tip.appendChild(document.createElement("br"));
        tip.appendChild(document.createTextNode(line));
      });
      tip.style.display = "block";
      tip.style.left = Math.min(sx(epoch) + 8, W - 150) + "px";
      tip.style.top = T + "px";
    });
    svg.addEventListener("mouseleave", function () {
      tip.style.display = "none";
      cursor.setAttribute("visibility", "hidden");
    });
    box.appendChild(chart);
  }

  function drawCurves(data) {
    var box = document.getElementById("curves-chart");
    if (!box || !data.history || !data.history.length) return;
    data.panels.forEach(function (panel) { drawPanel(box, panel[0], panel[1], data.history); });
    box.setAttribute("data-drawn", String(box.querySelectorAll("svg").length));
  }

  var data = JSON.parse(document.getElementById("zoo-data").textContent);
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
  drawCurves(data);
  document.documentElement.setAttribute("data-report", "ready");
})();
