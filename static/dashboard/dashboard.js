// Move focus to the error summary when a form comes back with errors (GOV.UK pattern), so
// keyboard and screen-reader users land on the list of problems.
document.addEventListener("DOMContentLoaded", () => {
  const summary = document.querySelector("[data-error-summary]");
  if (summary) summary.focus();
});
document.addEventListener("htmx:afterSwap", (event) => {
  const summary = event.target.querySelector("[data-error-summary]");
  if (summary) summary.focus();
});
