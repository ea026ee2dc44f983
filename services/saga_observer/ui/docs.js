// Swagger UI for the observer's API, from local files only (the page's CSP allows no inline script).
// A token saved by the observer's UI in this tab is sent with "Try it out" requests.
if (window.SwaggerUIBundle) {
  window.SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: (request) => {
      const token = sessionStorage.getItem("token");
      if (token) request.headers.Authorization = `Bearer ${token}`;
      return request;
    },
  });
}
