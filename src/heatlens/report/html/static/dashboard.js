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
  // a search box narrows the rows of its tables as one types (the form still works without
  // script: it asks the server for ?q=)
  document.querySelectorAll("input[data-filter-rows]").forEach(function (input) {
    var rows = document.querySelectorAll(input.getAttribute("data-filter-rows"));
    input.addEventListener("input", function () {
      var text = input.value.trim().toLowerCase();
      rows.forEach(function (row) {
        var name = row.querySelector("th").textContent.toLowerCase();
        row.hidden = text !== "" && name.indexOf(text) < 0;
      });
    });
    if (input.form.hasAttribute("data-static")) {
      input.form.addEventListener("submit", function (event) {
        event.preventDefault();
      });
    }
  });
})();
