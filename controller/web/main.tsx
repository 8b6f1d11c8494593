/** The controller's web view: a jobs list, one job's live log, the agents; served at `/` by the controller. */
import "./style.css";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api } from "./api.ts";
import { JobPage } from "./job-page.tsx";
import { AgentsPage, JobsPage } from "./lists.tsx";
import { Link, reportError, SIGN_IN_EVENT } from "./ui.tsx";

function App() {
  const [path, setPath] = useState(location.pathname);
  const [signIn, setSignIn] = useState(false);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    const onPop = () => setPath(location.pathname);
    const onSignIn = () => setSignIn(true);
    addEventListener("popstate", onPop);
    addEventListener(SIGN_IN_EVENT, onSignIn);
    return () => {
      removeEventListener("popstate", onPop);
      removeEventListener(SIGN_IN_EVENT, onSignIn);
    };
  }, []);
  const jobMatch = /^\/jobs\/([^/]+)\/?$/.exec(path);
  const page = signIn ? (
    <SignIn
      onDone={() => {
        setSignIn(false);
        setGeneration((g) => g + 1);
      }}
    />
  ) : jobMatch ? (
    <JobPage key={`${jobMatch[1]}-${generation}`} id={decodeURIComponent(jobMatch[1]!)} />
  ) : path === "/agents" ? (
    <AgentsPage key={generation} />
  ) : (
    <JobsPage key={generation} />
  );
  return (
    <>
      <nav class="top">
        <Link href="/" class="brand">
          Controller
        </Link>
        <Link href="/" class={jobMatch || path === "/" || path === "/jobs" ? "active" : ""}>
          Jobs
        </Link>
        <Link href="/agents" class={path === "/agents" ? "active" : ""}>
          Agents
        </Link>
      </nav>
      <main>{page}</main>
    </>
  );
}

function SignIn(props: { onDone: () => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | undefined>(undefined);
  return (
    <section class="sign-in">
      <h1>Sign in</h1>
      <p>This controller asks for its API token (the value of CONTROLLER_TOKEN or --token-file).</p>
      <form
        onSubmit={async (event) => {
          event.preventDefault();
          try {
            await api.signIn(token);
            setToken("");
            props.onDone();
          } catch (caught) {
            setError(
              caught instanceof Error && caught.name === "SignInRequired"
                ? "wrong token"
                : reportError(caught),
            );
          }
        }}
      >
        <input
          type="password"
          name="token"
          autocomplete="current-password"
          placeholder="token"
          value={token}
          onInput={(e) => setToken(e.currentTarget.value)}
        />
        <button type="submit">Sign in</button>
      </form>
      {error ? <p class="error">{error}</p> : null}
    </section>
  );
}

render(<App />, document.getElementById("app")!);
