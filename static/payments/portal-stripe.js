// The portal's Stripe.js pages (templates/portal/payments/add_card.html, authenticate.html). Configuration comes
// from data attributes (the Content-Security-Policy allows no inline script). The server never trusts what this
// script reports: after Stripe.js is done, the browser goes to the return URL and the server reads the intent
// from Stripe.
(function () {
  "use strict";
  var form = document.getElementById("stripe-setup-form");
  if (!form || typeof window.Stripe !== "function") { return; }
  var data = form.dataset;
  var stripe = window.Stripe(data.publishableKey, data.locale ? { locale: data.locale } : undefined);
  var errorBox = document.getElementById("stripe-error");
  var button = document.getElementById("stripe-submit");
  var elements = null;
  if (data.stripeMode === "setup") {
    elements = stripe.elements({ clientSecret: data.clientSecret });
    elements.create("payment").mount("#payment-element");
  }
  function showError(message) {
    errorBox.textContent = message || data.errorText;
    errorBox.hidden = false;
    button.disabled = false;
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    button.disabled = true;
    errorBox.hidden = true;
    var done;
    if (data.stripeMode === "setup") {
      // Stripe redirects to return_url?setup_intent=… itself (3-D Secure may need a redirect).
      done = stripe.confirmSetup({ elements: elements, confirmParams: { return_url: data.returnUrl } });
    } else {
      done = stripe.confirmCardPayment(data.clientSecret, { payment_method: data.paymentMethod }).then(function (result) {
        if (!result.error) { window.location.assign(data.returnUrl); }
        return result;
      });
    }
    done.then(function (result) {
      if (result && result.error) { showError(result.error.message); }
    });
  });
})();
