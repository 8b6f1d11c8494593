/** Small shared pieces of the web view: navigation, status badges, polling. */
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { SignInRequired } from "./api.ts";

/** Moves to `href` inside the page (history API), without a reload. */
export function navigate(href: string): void {
  history.pushState(null, "", href);
  dispatchEvent(new PopStateEvent("popstate"));
}

export function Link(props: { href: string; class?: string; children: ComponentChildren; title?: string }) {
  return (
    <a
      href={props.href}
      class={props.class}
      title={props.title}
      onClick={(event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
        event.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

export function StatusBadge(props: { status: string }) {
  return <span class={`badge status-${props.status}`}>{props.status}</span>;
}

/** Raised (as a window event) when an API call answers 401: the app shows the sign-in form. */
export const SIGN_IN_EVENT = "controller-sign-in-required";

export function reportError(error: unknown): string {
  if (error instanceof SignInRequired) {
    dispatchEvent(new Event(SIGN_IN_EVENT));
    return "sign-in required";
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Calls `load` now and every `intervalMs` while the tab is visible; returns its last result and
 * the last error (as text). `deps` restart it.
 */
export function usePoll<T>(
  load: (signal: AbortSignal) => Promise<T>,
  intervalMs: number,
  deps: unknown[],
): { data: T | undefined; error: string | undefined } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      if (!document.hidden) {
        try {
          setData(await loadRef.current(controller.signal));
          setError(undefined);
        } catch (caught) {
          if (controller.signal.aborted) return;
          setError(reportError(caught));
        }
      }
      if (!controller.signal.aborted) timer = setTimeout(tick, intervalMs);
    };
    void tick();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, deps);
  return { data, error };
}

/** The current time, refreshed every `intervalMs` (for durations that grow while a job runs). */
export function useNow(intervalMs: number, active: boolean): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs, active]);
  return now;
}
