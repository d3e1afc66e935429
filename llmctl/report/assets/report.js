// llmctl report: hover a figure to read the nearest point; click a figure to widen it.
(function () {
  "use strict";
  var tip = document.createElement("div");
  tip.className = "tip";
  tip.hidden = true;
  document.body.appendChild(tip);
  function box(el) {  // [left, top, right, bottom] in the figure's own units
    var a = function (name) { return parseFloat(el.getAttribute(name)); };
    if (el.tagName === "circle") return [a("cx"), a("cy"), a("cx"), a("cy")];
    return [a("x"), a("y"), a("x") + a("width"), a("y") + a("height")];
  }
  document.querySelectorAll("svg.chart:not(.empty)").forEach(function (svg) {
    var points = Array.prototype.map.call(svg.querySelectorAll(".pt"), function (el) {
      // The SVG's own <title> (a tooltip in .svg files) gives way to the quicker one here.
      var title = el.querySelector("title"), text = title ? title.textContent : "";
      if (title) title.remove();
      return { el: el, at: box(el), text: text };
    });
    var width = svg.viewBox.baseVal.width;
    var shown = null;
    function show(hit, event) {
      if (shown && shown !== hit) shown.el.classList.remove("on");
      shown = hit;
      if (!hit) { tip.hidden = true; return; }
      hit.el.classList.add("on");
      tip.textContent = hit.text;
      tip.style.left = event.pageX + 14 + "px";
      tip.style.top = event.pageY + 14 + "px";
      tip.hidden = false;
    }
    svg.addEventListener("mousemove", function (event) {
      var rect = svg.getBoundingClientRect();
      var k = width / rect.width;
      var x = (event.clientX - rect.left) * k, y = (event.clientY - rect.top) * k;
      var best = null, bestD = 28 * 28;
      points.forEach(function (p) {
        var dx = Math.max(p.at[0] - x, 0, x - p.at[2]), dy = Math.max(p.at[1] - y, 0, y - p.at[3]);
        var d = dx * dx + dy * dy;
        if (d < bestD) { best = p; bestD = d; }
      });
      show(best, event);
    });
    svg.addEventListener("mouseleave", function () { show(null); });
  });
  document.querySelectorAll("figure.plot").forEach(function (figure) {
    figure.addEventListener("click", function () { figure.classList.toggle("wide"); });
  });
})();
