// The API reference at /docs: Swagger UI (vendored) on /openapi.json. "Try it out" rides
// on the console session, so unsafe requests carry the session's CSRF token.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var meta = document.querySelector('meta[name="csrf-token"]');
    var csrf = meta ? meta.getAttribute("content") : "";
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      requestInterceptor: function (request) {
        request.headers["X-CSRF-Token"] = csrf;
        return request;
      }
    });
  });
})();
