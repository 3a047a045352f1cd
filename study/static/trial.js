// One trial: wait until every image has loaded, then show them together, start the response
// clock and, with an exposure limit, hide them again after that many milliseconds (the answer
// time stays unlimited). Buttons are enabled only once the images are visible.
(function () {
  "use strict";
  // The progress bar's width comes from a data attribute: the page allows no inline styles.
  document.querySelectorAll(".fill[data-width]").forEach(function (bar) {
    bar.style.width = bar.dataset.width + "%";
  });
  var form = document.getElementById("answer-form");
  if (!form) return;
  var box = form.querySelector(".stimuli");
  var images = Array.prototype.slice.call(box.querySelectorAll("img"));
  var buttons = form.querySelectorAll("button[name=answer]");
  var exposure = parseInt(form.dataset.exposure || "0", 10);
  var shownAt = null;
  var sent = false;

  function ready(img) { return img.complete && img.naturalWidth > 0; }

  function show() {
    if (shownAt !== null) return;
    box.classList.remove("loading");
    shownAt = performance.now();
    buttons.forEach(function (b) { b.disabled = false; });
    if (exposure > 0) {
      setTimeout(function () {
        images.forEach(function (img) {
          img.style.width = img.clientWidth + "px";
          img.style.height = img.clientHeight + "px";
          img.classList.add("masked");
          img.parentNode.classList.add("masked");  // the frame keeps the size, in grey
        });
      }, exposure);
    }
  }

  function check() { if (images.every(ready)) show(); }

  // The server serves a trial's photos only within its exposure time (a reload cannot show
  // them again): after that the answer is given from memory.
  function expired() {
    if (shownAt !== null) return;
    images.forEach(function (img) { img.parentNode.classList.add("masked"); img.hidden = true; });
    document.getElementById("expired").hidden = false;
    box.classList.remove("loading");
    shownAt = performance.now();
    buttons.forEach(function (b) { b.disabled = false; });
  }

  images.forEach(function (img) {
    img.addEventListener("load", check);
    img.addEventListener("error", expired);
  });
  check();
  images.forEach(function (img) { if (img.complete && img.naturalWidth === 0 && img.src) expired(); });

  form.addEventListener("submit", function (event) {
    if (sent || shownAt === null) { event.preventDefault(); return; }
    sent = true;  // one answer per screen, even on a double click
    form.elements.rt_ms.value = String(Math.round(performance.now() - shownAt));
    // The clicked button's name/value is sent by the browser; keep it while disabling the rest.
    setTimeout(function () { buttons.forEach(function (b) { b.disabled = true; }); }, 0);
  });
})();
