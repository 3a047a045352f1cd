"""DeepColor's Gradio app, also the Hugging Face Space entry point: UI wiring only.

Every action calls a handler in :mod:`deepcolor.ui`, which goes through the library. Run
``python app.py [--host H] [--port P]`` (defaults: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT,
else 127.0.0.1:7860). Limits come from ``DEEPCOLOR_APP_*`` variables (see deepcolor/ui/settings.py).
"""

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from deepcolor.errors import DeviceUnavailable  # noqa: E402
from deepcolor.pipeline import resolve_device  # noqa: E402
from deepcolor.ui import AppSettings, ModelHub  # noqa: E402
from deepcolor.ui import batch as batch_ui  # noqa: E402
from deepcolor.ui import compare as compare_ui  # noqa: E402
from deepcolor.ui import conditioned as conditioned_ui  # noqa: E402
from deepcolor.ui import guided as guided_ui  # noqa: E402
from deepcolor.ui.common import load_input, user_errors  # noqa: E402
from deepcolor.ui.examples import EXAMPLES_DIR, example_photos  # noqa: E402

try:  # Hugging Face ZeroGPU: a GPU is attached only inside functions decorated with spaces.GPU
    import spaces
except ImportError:  # not on a Space
    spaces = None

ON_ZERO_GPU = spaces is not None and os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def handler(fn=None, *, gpu_seconds: int = 60):
    """A UI action: readable errors, and a GPU lease (of at most ``gpu_seconds``) on ZeroGPU."""
    if fn is None:
        return lambda f: handler(f, gpu_seconds=gpu_seconds)
    fn = user_errors(fn)
    return spaces.GPU(duration=gpu_seconds)(fn) if ON_ZERO_GPU else fn


CSS = """
.result-slider { min-width: 280px; }
#guided-canvas img { cursor: crosshair; }
.swatches span { display: inline-block; width: 1.6em; height: 1.6em; margin-right: .3em;
                 border: 1px solid #888; border-radius: 4px; vertical-align: middle; }
"""

ADD, MOVE = "Add a hint", "Move the selected hint"


def models_markdown(hub: ModelHub) -> str:
    rows = ["| model | status | what it is / why not |", "|---|---|---|"]
    for s in hub.statuses():
        state = "available" if s.available else "unavailable"
        text = s.summary if s.available else s.reason
        extra = f" ({', '.join(s.needs)} needed)" if s.needs else ""
        rows.append(f"| `{s.name}` | {state}{extra} | {text.replace('|', '/')} |")
    return "\n".join(rows)


def device_label(hub: ModelHub) -> str:
    if ON_ZERO_GPU:
        return "ZeroGPU"
    device = hub.settings.device
    return resolve_device(None if device in ("", "auto") else device).type.upper()


def _first(names, default):
    return default if default in names else (names[0] if names else None)


# --- Compare -------------------------------------------------------------------------------------
def compare_tab(hub: ModelHub) -> None:
    automatic = hub.available(automatic=True)
    default = hub.default_model()
    chosen = [default] + [n for n in ("tint", "gray") if n in automatic and n != default][:1]
    slots = min(len(automatic), compare_ui.MAX_MODELS) or 1
    examples = example_photos()

    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(
                type="filepath",
                label="Photo (colour or black-and-white)",
                height=300,
                sources=["upload", "clipboard"],
                elem_id="compare-input",
            )
            info = gr.Markdown(elem_id="compare-info")
            models = gr.CheckboxGroup(
                automatic,
                value=chosen,
                label="Models",
                elem_id="compare-models",
                info="Colour photos are turned to grayscale; the original becomes the ground truth.",
            )
            missing = [s.name for s in hub.statuses() if s.automatic and not s.available]
            if missing:
                gr.Markdown(
                    f"Not available here: {', '.join(missing)} (the Models tab says why).",
                    elem_id="compare-missing",
                )
            scaled = ", ".join(hub.available("chroma_gain", automatic=True)) or "none here"
            strength = gr.Slider(
                0.0,
                compare_ui.MAX_COLOUR_STRENGTH,
                value=1.0,
                step=0.25,
                label=f"Colour strength ({scaled}; 1 = as shipped)",
                elem_id="compare-strength",
            )
            run = gr.Button("Colourise", variant="primary", elem_id="compare-run")
            if examples:
                gr.Examples(examples, inputs=image, label="Examples (Kodak, free for any use)")
        with gr.Column(scale=2):
            status = gr.Markdown(elem_id="compare-status")
            sliders = []
            for row_start in range(0, slots, 2):
                with gr.Row():
                    for _ in range(min(2, slots - row_start)):
                        sliders.append(
                            gr.ImageSlider(
                                visible=False,
                                format="png",
                                elem_classes=["result-slider"],
                                buttons=["download", "fullscreen"],
                                max_height=480,
                            )
                        )
            metrics = gr.Dataframe(
                headers=compare_ui.METRIC_HEADERS,
                interactive=False,
                label="Metrics",
                elem_id="compare-metrics",
            )
            files = gr.File(label="Downloads (PNG, full resolution)", file_count="multiple")

    @handler
    def describe(value):
        return compare_ui.describe_input(value, hub) if value else ""

    @handler
    def run_compare(value, names, colour_strength=1.0):
        result = compare_ui.compare(value, names, hub, colour_strength)
        updates = []
        for i in range(len(sliders)):
            if i < len(result.outputs):
                out = result.outputs[i]
                label = f"{out.name} - {out.seconds:.2f} s"
                updates.append(
                    gr.update(value=(result.gray_png, out.png), label=label, visible=True)
                )
            else:
                updates.append(gr.update(value=None, visible=False))
        table = result.metrics.astype(object).where(result.metrics.notna(), "")
        return [result.summary(), *updates, table, [o.png for o in result.outputs]]

    @handler
    def colorize(value, model_name):
        return compare_ui.colorize_one(value, model_name, hub)

    image.change(describe, image, info, preprocess=False, api_name="describe")
    run.click(
        run_compare,
        [image, models, strength],
        [status, *sliders, metrics, files],
        preprocess=False,
        api_name="compare",
    )
    # API only: one photo, one model (default model when empty) -> a PNG at full resolution.
    api_model = gr.Textbox(visible=False)
    api_result = gr.Image(visible=False, type="filepath", format="png")
    api_button = gr.Button(visible=False)
    api_button.click(
        colorize, [image, api_model], api_result, preprocess=False, api_name="colorize"
    )


# --- Guided ---------------------------------------------------------------------------------------
def guided_tab(hub: ModelHub) -> None:
    takers = hub.available("hints")
    if not takers:
        gr.Markdown(f"**{guided_ui._no_model_message(hub)}**", elem_id="guided-notice")
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(
                type="filepath",
                label="Photo",
                height=220,
                sources=["upload", "clipboard"],
                elem_id="guided-input",
            )
            board = gr.Image(
                label="Click on the photo to place a colour hint",
                interactive=False,
                format="png",
                elem_id="guided-canvas",
                buttons=[],
            )
            examples = example_photos()
            if examples:
                gr.Examples(examples, inputs=image)
        with gr.Column(scale=1):
            model = gr.Dropdown(
                takers,
                value=hub.default_for("hints"),
                label="Model (takes colour hints)",
                interactive=bool(takers),
                elem_id="guided-model",
            )
            with gr.Row():
                colour = gr.ColorPicker("#2f7fd2", label="Hint colour", elem_id="guided-colour")
                action = gr.Radio([ADD, MOVE], value=ADD, label="Clicking on the photo will")
            size = gr.Slider(1, 15, value=5, step=2, label="Hint size (pixels at the model's size)")
            swatches = gr.HTML(elem_classes=["swatches"])
            suggestions = gr.Radio(
                [],
                label="Colours the model suggests at the last click",
                elem_id="guided-suggestions",
                visible=False,
            )
            selected = gr.Number(0, precision=0, label="Selected hint #", minimum=0)
            with gr.Row():
                recolour = gr.Button("Give it the hint colour", size="sm")
                remove = gr.Button("Remove it", size="sm")
                clear = gr.Button("Remove all", size="sm")
            with gr.Accordion("Global hints (optional)", open=False):
                use_saturation = gr.Checkbox(False, label="Set the overall saturation")
                saturation = gr.Slider(0.0, 1.0, value=0.25, step=0.01, label="Saturation")
                reference = gr.Image(
                    type="filepath", label="Palette from a reference photo", height=160
                )
            run = gr.Button("Colourise", variant="primary", elem_id="guided-run")
        with gr.Column(scale=1):
            result = gr.ImageSlider(
                label="Result", format="png", elem_id="guided-result", max_height=480
            )
            timing = gr.Markdown(elem_id="guided-status")
            table = gr.Dataframe(
                headers=guided_ui.HINT_HEADERS,
                interactive=False,
                label="Hints",
                elem_id="guided-hints",
            )
    hints = gr.JSON([], visible=False)  # the hint list, a JSON component so the API can send one

    def board_image(value, hint_list, sel):
        return guided_ui.canvas(load_input(value, hub.settings.max_pixels), hint_list, sel)

    def refreshed(value, hint_list, sel):
        return hint_list, board_image(value, hint_list, sel), guided_ui.hints_table(hint_list), sel

    @handler
    def load(value):
        if not value:
            return (
                [],
                None,
                guided_ui.hints_table([]),
                0,
                gr.update(choices=[], value=None, visible=False),
                "",
                None,
            )
        return (
            *refreshed(value, [], 0),
            gr.update(choices=[], value=None, visible=False),
            "",
            None,
        )

    @handler
    def click(value, hint_list, mode, sel, picked, hint_size, model_name, evt: gr.SelectData):
        loaded = load_input(value, hub.settings.max_pixels)
        x, y = guided_ui.click_to_fraction(evt.index, guided_ui.preview_size(*loaded.size))
        if mode == MOVE:
            hint_list = guided_ui.move_hint(hint_list, sel, x, y)
        else:
            hint_list = guided_ui.add_hint(hint_list, x, y, picked, int(hint_size))
            sel = len(hint_list)
        suggested = guided_ui.suggest_colours(loaded, model_name, x, y, hub)
        spans = "".join(
            f'<span style="background:{c}" title="{c} {p:.0%}"></span>' for c, p in suggested
        )
        choices = [(f"{c} ({p:.0%})", c) for c, p in suggested]
        return (
            *refreshed(loaded, hint_list, sel),
            gr.update(choices=choices, value=None, visible=bool(choices)),
            spans,
        )

    @handler
    def recolour_selected(value, hint_list, sel, picked):
        return refreshed(value, guided_ui.recolour_hint(hint_list, sel, picked), sel)

    @handler
    def use_suggestion(value, hint_list, sel, picked):
        if not picked:
            return hint_list, gr.update(), gr.update(), sel, gr.update()
        return (*refreshed(value, guided_ui.recolour_hint(hint_list, sel, picked), sel), picked)

    @handler
    def remove_selected(value, hint_list, sel):
        hint_list = guided_ui.remove_hint(hint_list, sel)
        return refreshed(value, hint_list, min(int(sel or 0), len(hint_list)))

    @handler
    def clear_all(value):
        return refreshed(value, [], 0)

    @handler
    def colourise(value, model_name, hint_list, use_sat, sat, ref):
        out = guided_ui.run_guided(
            value,
            model_name,
            hint_list,
            hub,
            saturation=float(sat) if use_sat else None,
            reference=ref or None,
        )
        text = f"{model_name}: {out.hints_used} hint(s), {out.seconds:.2f} s"
        return (out.gray_png, out.colour_png), text

    @handler
    def auto_colourise(value, model_name, *rest):
        # After a hint edit: re-run when there is something to run, stay quiet otherwise.
        if not value or not model_name:
            return gr.update(), gr.update()
        return colourise(value, model_name, *rest)

    state = [hints, board, table, selected]
    run_inputs = [image, model, hints, use_saturation, saturation, reference]
    run_outputs = [result, timing]
    image.change(
        load,
        image,
        [*state, suggestions, swatches, result],
        preprocess=False,
        api_name="guided_load",
    ).success(auto_colourise, run_inputs, run_outputs, preprocess=False, api_visibility="private")
    board.select(
        click,
        [image, hints, action, selected, colour, size, model],
        [*state, suggestions, swatches],
        preprocess=False,
        api_name="guided_click",
    ).success(auto_colourise, run_inputs, run_outputs, preprocess=False, api_visibility="private")
    suggestions.input(
        use_suggestion,
        [image, hints, selected, suggestions],
        [*state, colour],
        preprocess=False,
        api_name="guided_use_suggestion",
    ).success(auto_colourise, run_inputs, run_outputs, preprocess=False, api_visibility="private")
    recolour.click(
        recolour_selected,
        [image, hints, selected, colour],
        state,
        preprocess=False,
        api_name="guided_recolour",
    ).success(auto_colourise, run_inputs, run_outputs, preprocess=False, api_visibility="private")
    remove.click(
        remove_selected, [image, hints, selected], state, preprocess=False, api_name="guided_remove"
    ).success(auto_colourise, run_inputs, run_outputs, preprocess=False, api_visibility="private")
    clear.click(clear_all, image, state, preprocess=False, api_name="guided_clear").success(
        auto_colourise, run_inputs, run_outputs, preprocess=False, api_visibility="private"
    )
    selected.input(
        handler(lambda v, h, s: board_image(v, h, s) if v else None),
        [image, hints, selected],
        board,
        preprocess=False,
        api_visibility="private",
    )
    run.click(colourise, run_inputs, run_outputs, preprocess=False, api_name="guided")


# --- Reference and Prompt -------------------------------------------------------------------------
def reference_tab(hub: ModelHub) -> None:
    names = hub.available("reference")
    notice = conditioned_ui.tab_notice(hub, "reference", "reference-based")
    gr.Markdown(notice or "The target takes its colours from the reference photo.")
    with gr.Row():
        target = gr.Image(type="filepath", label="Photo to colourise", height=260)
        reference = gr.Image(type="filepath", label="Reference photo (in colour)", height=260)
        result = gr.ImageSlider(label="Result", format="png", max_height=480)
    with gr.Row():
        model = gr.Dropdown(
            names, value=_first(names, "exemplar"), label="Model", interactive=bool(names)
        )
        run = gr.Button("Colourise", variant="primary", interactive=bool(names))
    timing = gr.Markdown()

    @handler
    def go(value, ref, model_name):
        out = conditioned_ui.run_reference(value, ref, model_name, hub)
        return (out.gray_png, out.colour_png), f"{out.model}: {out.seconds:.2f} s"

    run.click(
        go, [target, reference, model], [result, timing], preprocess=False, api_name="reference"
    )


def prompt_tab(hub: ModelHub) -> None:
    names = hub.available("prompt")
    gr.Markdown(conditioned_ui.prompt_notice(hub) or "Describe the colours you want.")
    enabled = bool(names)
    with gr.Row():
        with gr.Column():
            target = gr.Image(
                type="filepath", label="Photo to colourise", height=260, interactive=enabled
            )
            prompt = gr.Textbox(
                label="Prompt", placeholder="a red barn under a blue sky", interactive=enabled
            )
            negative = gr.Textbox(label="Negative prompt", value="", interactive=enabled)
            with gr.Row():
                steps = gr.Slider(
                    1,
                    conditioned_ui.MAX_STEPS,
                    value=25,
                    step=1,
                    label="Steps",
                    interactive=enabled,
                )
                seed = gr.Number(0, precision=0, label="Seed", interactive=enabled)
            model = gr.Dropdown(
                names, value=_first(names, "controlnet"), label="Model", interactive=enabled
            )
            run = gr.Button("Colourise", variant="primary", interactive=enabled)
        with gr.Column():
            result = gr.ImageSlider(label="Result", format="png", max_height=480)
            timing = gr.Markdown()

    @handler
    def go(value, text, neg, n_steps, n_seed, model_name):
        out = conditioned_ui.run_prompt(
            value, text, model_name, hub, negative_prompt=neg, steps=n_steps, seed=n_seed
        )
        return (out.gray_png, out.colour_png), f"{out.model}: {out.seconds:.2f} s"

    run.click(
        go,
        [target, prompt, negative, steps, seed, model],
        [result, timing],
        preprocess=False,
        api_name="prompt",
    )


# --- Batch ----------------------------------------------------------------------------------------
def batch_tab(hub: ModelHub) -> None:
    automatic = hub.available(automatic=True)
    settings = hub.settings
    gr.Markdown(
        f"Up to {settings.batch_max_files} photos or zips of photos "
        f"({settings.batch_max_total_megabytes:.0f} MB unpacked); you get one zip of PNGs."
    )
    with gr.Row():
        with gr.Column():
            files = gr.File(
                file_count="multiple",
                file_types=["image", ".zip"],
                label="Photos or zips",
                elem_id="batch-files",
            )
            model = gr.Dropdown(automatic, value=hub.default_model(), label="Model")
            run = gr.Button("Colourise all", variant="primary", elem_id="batch-run")
        with gr.Column():
            status = gr.Markdown(elem_id="batch-status")
            archive = gr.File(label="Colourised photos (zip)", elem_id="batch-zip")
            failures = gr.Dataframe(
                headers=batch_ui.FAILURE_HEADERS,
                interactive=False,
                label="Failed files",
                elem_id="batch-failures",
                wrap=True,
            )

    @handler(gpu_seconds=120)
    def go(values, model_name, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        result = batch_ui.run_batch(
            values, model_name, hub, progress=lambda f, d: progress(f, desc=d)
        )
        return result.summary(), result.zip_path, result.failures_table()

    run.click(go, [files, model], [status, archive, failures], preprocess=False, api_name="batch")


# --- the app --------------------------------------------------------------------------------------
def build_app(hub: ModelHub | None = None) -> gr.Blocks:
    hub = hub or ModelHub(AppSettings.from_env())
    with gr.Blocks(title="DeepColor", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(
            "# DeepColor\nColourise black-and-white photos and compare the methods side by side. "
            f"Default model: `{hub.default_model()}`; running on {device_label(hub)}."
        )
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                compare_tab(hub)
            with gr.Tab("Guided", id="guided"):
                guided_tab(hub)
            with gr.Tab("Reference", id="reference"):
                reference_tab(hub)
            with gr.Tab("Prompt", id="prompt"):
                prompt_tab(hub)
            with gr.Tab("Batch", id="batch"):
                batch_tab(hub)
            with gr.Tab("Models", id="models"):
                gr.Markdown(models_markdown(hub), elem_id="models-table")
    demo.queue(default_concurrency_limit=hub.settings.concurrency, max_size=hub.settings.queue_size)
    return demo


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="DeepColor's web app")
    parser.add_argument(
        "--host", default=None, help="address to listen on (env GRADIO_SERVER_NAME)"
    )
    parser.add_argument("--port", type=int, default=None, help="port (env GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio link")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    settings = AppSettings.from_env()
    try:
        demo = build_app(ModelHub(settings))
    except DeviceUnavailable as exc:  # a bad DEEPCOLOR_DEVICE: say so before serving anything
        raise SystemExit(f"error: DEEPCOLOR_DEVICE={settings.device!r}: {exc}") from None
    demo.launch(
        server_name=args.host,  # None: Gradio reads GRADIO_SERVER_NAME (a Space sets 0.0.0.0)
        server_port=args.port,  # None: GRADIO_SERVER_PORT, else 7860
        share=args.share or None,
        max_file_size=settings.max_file_size,
        allowed_paths=[str(EXAMPLES_DIR)],  # the examples, when started from another folder
        show_error=False,  # unexpected errors: a generic message, the traceback stays in the log
        css=CSS,
        footer_links=["api", "gradio"],
    )


if __name__ == "__main__":
    main()
