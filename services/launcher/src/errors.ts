/** A start-up failure with a message meant for the person who ran `npm start`. */
export class StartupError extends Error {
  override name = "StartupError";
}
