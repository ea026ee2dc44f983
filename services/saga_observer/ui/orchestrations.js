// In-service orchestration runs inside their service's lane (timeline) and under their report
// (causation graph). The runs come from the flow's JSON (`flow.orchestrations`), which the
// observer reads from the flow's orchestration.run events. Values are set as text, never HTML.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function millis(value) {
  if (value === null || value === undefined) return "";
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value} ms`;
}

function tries(n) {
  return n === 1 ? "1 try" : `${n} tries`;
}

/** What one step did, in words: its tries, retries, failure and compensation. */
export function stepText(step) {
  const parts = [step.name];
  if (step.status === "not_run") return `${step.name} · not run`;
  if (step.attempts) {
    const retried = step.retries ? ` (${step.retries} ${step.retries === 1 ? "retry" : "retries"}${step.status !== "failed" && step.error_type ? ` after ${step.error_type}` : ""})` : "";
    parts.push(`${tries(step.attempts)}${retried}`);
  }
  if (step.status === "failed") parts.push(`failed${step.error_type ? `: ${step.error_type}` : ""}`);
  if (step.duration_ms !== null) parts.push(millis(step.duration_ms));
  if (step.status === "compensated") parts.push(`compensated (${tries(step.compensation_attempts)}${step.compensation_ms !== null ? `, ${millis(step.compensation_ms)}` : ""})`);
  if (step.status === "compensation_failed") parts.push(`compensation failed${step.compensation_error_type ? `: ${step.compensation_error_type}` : ""}`);
  return parts.join(" · ");
}

function runText(run) {
  if (!run.readable) return "orchestration run (report not readable)";
  const failed = run.failed_step ? `, ${run.failed_step} failed` : "";
  return `${run.orchestration} run: ${run.status}${failed} · ${millis(run.duration_ms)}${run.resumed ? " · resumed" : ""}`;
}

function runsByEvent(flow) {
  return new Map((flow.orchestrations || []).map((run) => [run.event_id, run]));
}

/**
 * The timeline's rows: the flow's events, each orchestration.run report preceded by a row for
 * its run and one per step (the steps happened before the report was published).
 */
export function laneRows(flow) {
  const runs = runsByEvent(flow);
  const rows = [];
  for (const event of flow.events) {
    const run = runs.get(event.id);
    if (run) {
      rows.push({ run });
      for (const step of run.steps) rows.push({ run, step });
    }
    rows.push({ event });
  }
  return rows;
}

/** One run or step row of the timeline, drawn in the run's service lane at `x`. */
export function laneRow(row, { x, y, rowHeight, width, gutter, start, select }) {
  const { run, step } = row;
  const at = step ? "lane-step" : "lane-run";
  const status = step ? step.status : run.status || "unreadable";
  const g = svg("g", {
    "data-testid": at, "data-event": run.event_id, "data-service": run.service,
    "data-step": step ? step.name : undefined, "data-status": status,
    "data-attempts": step ? step.attempts : undefined, class: `orch ${at}`,
  });
  g.addEventListener("click", () => select(run.event_id)); // the report, with its payload
  g.append(svg("rect", { class: "row-hit", x: 0, y: y - rowHeight / 2, width, height: rowHeight }));
  g.append(svg("rect", { class: `orch-bar ${run.status || "unreadable"}`, x: x - 3, y: y - rowHeight / 2, width: 6, height: rowHeight }));
  // In a lane on the right half the words go to the bar's left, so they stay on the page.
  const left = x > gutter + (width - gutter) / 2;
  const side = (near) => (left ? x - near : x + near);
  const anchor = left ? "end" : "start";
  if (step) {
    if (start !== null && run.started_at && step.offset_ms !== null) {
      const offset = Date.parse(run.started_at) + step.offset_ms - start;
      g.append(svg("text", { class: "offset", x: 6, y: y + 4 }, `+${millis(Math.max(0, offset))}`));
    }
    g.append(svg("rect", { class: `orch-step ${step.status}`, x: left ? x - 20 : x + 8, y: y - 6, width: 12, height: 12, rx: 3 }));
    if (step.retries) g.append(svg("text", { class: "orch-retries", x: side(14), y: y + 3.5 }, String(step.attempts)));
    g.append(svg("text", { class: `orch-label ${step.status}`, x: side(26), y: y + 4, "text-anchor": anchor }, stepText(step)));
  } else {
    g.append(svg("text", { class: "orch-run", x: side(8), y: y + 4, "text-anchor": anchor }, runText(run)));
    g.append(svg("text", { class: "offset", x: gutter - 4, y: y + 4, "text-anchor": "end" }, "steps"));
  }
  return g;
}

/** The causation tree's sub-rows under an orchestration.run report: its steps. */
export function treeSteps(flow) {
  const runs = runsByEvent(flow);
  return (eventId) => {
    const run = runs.get(eventId);
    return run ? run.steps.map((step) => ({ run, step })) : [];
  };
}

/** One step as a row of the causation tree, indented under its report. */
export function treeStepRow({ run, step }, indent, select) {
  return el("div", {
    class: `tree-row orch-tree ${step.status}`, "data-testid": "graph-step", "data-event": run.event_id,
    "data-step": step.name, "data-status": step.status, "data-attempts": step.attempts,
    style: `padding-left:${8 + indent * 16}px`, onclick: () => select(run.event_id),
  },
  el("span", { class: "guide", text: "◇" }),
  el("span", { class: "type", text: step.name }),
  el("span", { class: "muted", text: `${run.service} · ${stepText(step).slice(step.name.length + 3)}` }));
}
