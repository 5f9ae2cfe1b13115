// Chat through GET /chat/stream (server-sent events); the conversation id is kept for follow-ups.
(function () {
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  const output = document.getElementById("chat-output");
  const thinking = document.getElementById("chat-thinking");
  let conversationId = null;

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const params = new URLSearchParams({ message: input.value });
    if (conversationId) params.set("conversation_id", conversationId);
    output.textContent = "";
    thinking.hidden = true;
    thinking.querySelector("pre").textContent = "";
    const source = new EventSource("/chat/stream?" + params.toString());
    source.addEventListener("content", (e) => { output.textContent += JSON.parse(e.data); });
    source.addEventListener("thinking", (e) => {
      thinking.hidden = false;
      thinking.querySelector("pre").textContent += JSON.parse(e.data);
    });
    source.addEventListener("done", (e) => { conversationId = JSON.parse(e.data).conversation_id; source.close(); });
    source.addEventListener("error", (e) => {
      if (e.data) output.textContent += "\n[error] " + JSON.parse(e.data).detail;
      source.close();
    });
    input.value = "";
  });
})();
