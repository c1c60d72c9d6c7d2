// A stand-in for Stripe.js (https://js.stripe.com/v3/) in the browser test: the same global `Stripe(key)` with
// the three calls the portal's pages use. It renders a placeholder where the Payment Element would be and calls
// the same Stripe API endpoints Stripe.js calls to confirm (…/setup_intents/<id>/confirm,
// …/payment_intents/<id>/confirm); the test routes https://api.stripe.com to the local fake. Not real 3-D Secure.
(function () {
  "use strict";
  window.Stripe = function (publishableKey) {
    var api = "https://api.stripe.com/v1/";
    var clientSecret = "";
    function post(path, body) {
      return fetch(api + path, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded", Authorization: "Bearer " + publishableKey },
        body: new URLSearchParams(body)
      }).then(function (response) { return response.json(); });
    }
    return {
      elements: function (options) {
        clientSecret = options.clientSecret;
        return {
          create: function () {
            return {
              mount: function (selector) {
                var box = document.querySelector(selector);
                box.innerHTML =
                  '<div style="border:1px solid #c8ccd4;border-radius:6px;padding:12px;display:grid;gap:8px">' +
                  '<label>Card number<br><input aria-label="Card number" value="4242 4242 4242 4242" style="width:100%"></label>' +
                  '<span style="display:flex;gap:8px"><label>Expiry<br><input aria-label="Expiry" value="12 / 34"></label>' +
                  '<label>CVC<br><input aria-label="CVC" value="123"></label></span></div>';
              }
            };
          }
        };
      },
      confirmSetup: function (args) {
        var id = clientSecret.split("_secret_")[0];
        return post("setup_intents/" + id + "/confirm", { client_secret: clientSecret, payment_method: "pm_card_visa" })
          .then(function (intent) {
            if (intent.error) { return { error: intent.error }; }
            window.location.assign(args.confirmParams.return_url + "?setup_intent=" + encodeURIComponent(intent.id));
            return {};
          });
      },
      confirmCardPayment: function (secret, data) {
        var id = secret.split("_secret_")[0];
        return post("payment_intents/" + id + "/confirm", { client_secret: secret, payment_method: data.payment_method })
          .then(function (intent) { return intent.error ? { error: intent.error } : { paymentIntent: intent }; });
      }
    };
  };
})();
