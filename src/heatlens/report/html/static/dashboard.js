// heatlens: draw each chart from its Vega-Lite spec (a JSON data block next to it) and submit the
// filter form when a filter changes. Vega evaluates expressions with its interpreter, never eval,
// so the pages' Content-Security-Policy needs no 'unsafe-eval'.
(function () {
  "use strict";
  var options = {
    actions: false,
    renderer: "svg",
    ast: true,
    expr: window.vegaExpressionInterpreter,
    defaultStyle: false,
    // vega-tooltip would inject a <style> element; its rules are in heatlens.css instead
    tooltip: { disableDefaultStyle: true },
  };
  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var spec = JSON.parse(document.getElementById(el.getAttribute("data-chart")).textContent);
    window
      .vegaEmbed(el, spec, options)
      .then(function () {
        el.setAttribute("data-rendered", "true");
      })
      .catch(function (err) {
        el.setAttribute("data-rendered", "failed");
        el.textContent = "This chart could not be drawn: " + err;
        console.error(err);
      });
  });
  document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
    select.addEventListener("change", function () {
      select.form.submit();
    });
  });
})();
