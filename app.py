"""DeepColor's Gradio app, also the Hugging Face Space entry point: UI wiring only.

Every action calls a handler in :mod:`deepcolor.ui`, which goes through the library. Run
``python app.py [--host H] [--port P]`` (defaults: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT,
else 127.0.0.1:7860). Limits come from ``DEEPCOLOR_APP_*`` variables (see deepcolor/ui/settings.py).
"""

import argparse
import os
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from deepcolor.errors import DeviceUnavailable, UnknownModel  # noqa: E402
from deepcolor.published import choice_label  # noqa: E402
from deepcolor.ui import AppSettings, ModelCatalog  # noqa: E402
from deepcolor.ui import batch as batch_ui  # noqa: E402
from deepcolor.ui import compare as compare_ui  # noqa: E402
from deepcolor.ui import conditioned as conditioned_ui  # noqa: E402
from deepcolor.ui import guided as guided_ui  # noqa: E402
from deepcolor.ui import video as video_ui  # noqa: E402
from deepcolor.ui.common import load_input, user_errors  # noqa: E402
from deepcolor.ui.examples import EXAMPLES_DIR, example_photos  # noqa: E402
from deepcolor.ui.models import device_label, model_lines, models_markdown  # noqa: E402

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


def clear_on_failure(event, outputs: list, hide: tuple = ()) -> None:
    """After a failed action, empty its outputs (and hide those in ``hide``): no earlier result
    stays on screen beside the error, the outputs' "Error" badges go, one pop-up says it."""
    hidden = {id(o) for o in hide}
    blanks = [gr.update(value=None, visible=False) if id(o) in hidden else None for o in outputs]
    blank = blanks[0] if len(outputs) == 1 else blanks
    event.failure(
        lambda: blank,
        None,
        outputs,
        show_progress="hidden",
        queue=False,
        api_visibility="private",
    )


def keep_on_failure(event, outputs: list) -> None:
    """After a failed edit, its outputs stay as they were, without "Error" badges: the pop-up
    says it once and the photo stays clickable (a badge would cover it)."""
    unchanged = [gr.update() for _ in outputs]
    event.failure(
        lambda: unchanged,
        None,
        outputs,
        show_progress="hidden",
        queue=False,
        api_visibility="private",
    )


CSS = (
    """
.result-slider { min-width: 280px; }
#guided-canvas img { cursor: crosshair; }
#guided-color, #guided-color .block { overflow: visible !important; }
"""
    + guided_ui.SUGGESTION_CSS
)


def _first(names, default):
    return default if default in names else (names[0] if names else None)


# --- Compare -------------------------------------------------------------------------------------
def compare_tab(catalog: ModelCatalog) -> None:
    automatic = catalog.available(automatic=True)
    default = catalog.default_model()
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
            info = gr.Markdown(label="About the photo", elem_id="compare-info")
            models = gr.CheckboxGroup(
                [(choice_label(name), name) for name in automatic],  # "(912 MB download)"
                value=[default],
                label="Models",
                elem_id="compare-models",
                info="Colour photos are turned to grayscale; the original becomes the ground truth.",
            )
            missing = [s.name for s in catalog.statuses() if s.automatic and not s.available]
            if missing:
                gr.Markdown(
                    f"Not available here: {', '.join(missing)} (the Models tab says why).",
                    elem_id="compare-missing",
                )
            scaled = ", ".join(catalog.available("chroma_gain", automatic=True)) or "none here"
            strength = gr.Slider(
                0.0,
                compare_ui.MAX_COLOR_STRENGTH,
                value=1.0,
                step=0.25,
                label=f"Colour strength ({scaled}; 1 = as shipped)",
                elem_id="compare-strength",
            )
            run = gr.Button("Colourise", variant="primary", elem_id="compare-run")
            with gr.Accordion("What each model is", open=True):
                gr.Markdown(model_lines(catalog, automatic), elem_id="compare-about")
            if examples:
                gr.Examples(examples, inputs=image, label="Examples (Kodak, free for any use)")
        with gr.Column(scale=2):
            status = gr.Markdown(label="Summary", elem_id="compare-status")
            sliders = []
            for row_start in range(0, slots, 2):
                with gr.Row():
                    for _ in range(min(2, slots - row_start)):
                        sliders.append(
                            gr.ImageSlider(
                                label=f"Result {len(sliders) + 1}",
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
        return compare_ui.describe_upload(value, catalog)

    @handler
    def run_compare(value, names, color_strength=1.0):
        result = compare_ui.compare(value, names, catalog, color_strength)
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
        return compare_ui.colorize_one(value, model_name, catalog)

    image.change(describe, image, info, preprocess=False, api_name="describe")
    results = [status, *sliders, metrics, files]
    clear_on_failure(
        run.click(
            run_compare, [image, models, strength], results, preprocess=False, api_name="compare"
        ),
        results,
        hide=tuple(sliders),
    )
    # API only: one photo, one model (default model when empty) -> a PNG at full resolution.
    api_model = gr.Textbox(visible=False)
    api_result = gr.Image(visible=False, type="filepath", format="png", label="Colourised photo")
    api_button = gr.Button(visible=False)
    api_button.click(
        colorize, [image, api_model], api_result, preprocess=False, api_name="colorize"
    )


# --- Guided ---------------------------------------------------------------------------------------
def _guided_layout(catalog: ModelCatalog) -> SimpleNamespace:
    """The Guided tab's components, laid out, by name for the wiring."""
    takers = catalog.available("hints")
    ui = SimpleNamespace()
    if not takers:
        gr.Markdown(f"**{guided_ui.no_model_message(catalog)}**", elem_id="guided-notice")
    gr.Markdown(guided_ui.INSTRUCTIONS, elem_id="guided-help")
    with gr.Row():
        with gr.Column(scale=1):
            ui.image = gr.Image(
                type="filepath",
                label="Photo",
                height=260,
                sources=["upload", "clipboard"],
                elem_id="guided-input",
            )
            ui.board = gr.Image(
                label="Click to place a hint; click a hint's dot to select it",
                interactive=False,
                format="png",
                elem_id="guided-canvas",
                buttons=[],
                visible=False,
            )
            ui.another = gr.Button(
                "Use another photo", size="sm", visible=False, elem_id="guided-another"
            )
            examples = example_photos()
            if examples:
                gr.Examples(examples, inputs=ui.image)
        with gr.Column(scale=1):
            ui.model = gr.Dropdown(
                takers,
                value=catalog.default_for("hints"),
                label="Model (takes colour hints)",
                interactive=bool(takers),
                elem_id="guided-model",
            )
            # Alone in its row: the picker's pop-up needs the column's whole width.
            ui.color = gr.ColorPicker("#2f7fd2", label="Hint colour", elem_id="guided-color")
            ui.action = gr.Radio(
                [guided_ui.ADD, guided_ui.MOVE],
                value=guided_ui.ADD,
                label="Clicking on the photo away from the dots will",
            )
            ui.size = gr.Radio(
                guided_ui.HINT_SIZES, value=5, label="Size of a new hint", elem_id="guided-size"
            )
            ui.suggestions = gr.Radio(
                [],
                label="Colours likely at the selected hint: click one to give it that colour",
                elem_id="guided-suggestions",
                visible=False,
            )
            ui.selected = gr.Number(
                0,
                precision=0,
                label="Selected hint (click its dot)",
                minimum=0,
                elem_id="guided-selected",
            )
            with gr.Row():
                ui.recolor = gr.Button("Give it the hint colour", size="sm")
                ui.remove = gr.Button("Remove it", size="sm")
                ui.clear = gr.Button("Remove all", size="sm")
            with gr.Accordion("Global hints (optional)", open=False):
                ui.use_saturation = gr.Checkbox(False, label="Set the overall saturation")
                ui.saturation = gr.Slider(0.0, 1.0, value=0.25, step=0.01, label="Saturation")
                ui.reference = gr.Image(
                    type="filepath", label="Palette from a reference photo", height=160
                )
            ui.run = gr.Button("Colourise", variant="primary", elem_id="guided-run")
        with gr.Column(scale=1):
            ui.result = gr.ImageSlider(
                label="Result", format="png", elem_id="guided-result", max_height=480
            )
            ui.timing = gr.Markdown(label="Status", elem_id="guided-status")
            ui.table = gr.Dataframe(
                headers=guided_ui.HINT_HEADERS,
                interactive=False,
                label="Hints",
                elem_id="guided-hints",
            )
    # the hint list, a JSON component so the API can send one
    ui.hints = gr.JSON([], visible=False, label="Hint list")
    return ui


def guided_tab(catalog: ModelCatalog) -> None:
    ui = _guided_layout(catalog)
    max_pixels = catalog.settings.max_pixels
    no_suggestions = gr.update(choices=[], value=None, visible=False)

    def refreshed(value, hint_list, sel):
        board = guided_ui.canvas(load_input(value, max_pixels), hint_list, sel)
        return hint_list, board, guided_ui.hints_table(hint_list), sel

    @handler
    def load(value):
        shown = bool(value)
        state = refreshed(value, [], 0) if shown else ([], None, guided_ui.hints_table([]), 0)
        views = gr.update(visible=not shown), gr.update(visible=shown), gr.update(visible=shown)
        return (*state, no_suggestions, None, *views)

    @handler
    def click(value, hint_list, mode, sel, picked, hint_size, model_name, evt: gr.SelectData):
        loaded = load_input(value, max_pixels)
        hint_list, sel, x, y = guided_ui.apply_click(
            loaded, hint_list, evt.index, mode=mode, selected=sel, color=picked, size=hint_size
        )
        choices = guided_ui.suggestion_choices(
            guided_ui.suggest_colors(loaded, model_name, x, y, catalog)
        )
        suggested = gr.update(choices=choices, value=None, visible=bool(choices))
        return (*refreshed(loaded, hint_list, sel), suggested)

    @handler
    def use_suggestion(value, hint_list, sel, picked):
        if not picked:
            return hint_list, gr.update(), gr.update(), sel, gr.update()
        return (*refreshed(value, guided_ui.recolor_hint(hint_list, sel, picked), sel), picked)

    @handler
    def recolor_selected(value, hint_list, sel, picked):
        return refreshed(value, guided_ui.recolor_hint(hint_list, sel, picked), sel)

    # The suggestions belong to the hint they were asked for: gone with it, or when another
    # hint is selected by its number.
    @handler
    def remove_selected(value, hint_list, sel):
        hint_list = guided_ui.remove_hint(hint_list, sel)
        return (*refreshed(value, hint_list, min(int(sel or 0), len(hint_list))), no_suggestions)

    @handler
    def clear_all(value):
        return (*refreshed(value, [], 0), no_suggestions)

    @handler
    def select_by_number(value, hint_list, sel):
        return (refreshed(value, hint_list, sel)[1] if value else None), no_suggestions

    @handler
    def colorize(value, model_name, hint_list, use_sat, sat, ref):
        out = guided_ui.run_guided(
            value,
            model_name,
            hint_list,
            catalog,
            saturation=float(sat) if use_sat else None,
            reference=ref or None,
        )
        return (out.gray_png, out.color_png), out.status()

    @handler
    def auto_colorize(value, model_name, *rest):
        # After a hint edit: re-run when there is something to run, stay quiet otherwise; a
        # photo taken away takes its result and status with it.
        if not value:
            return None, ""
        if not model_name:
            return gr.update(), gr.update()
        return colorize(value, model_name, *rest)

    handlers = SimpleNamespace(
        load=load,
        click=click,
        use_suggestion=use_suggestion,
        recolor_selected=recolor_selected,
        remove_selected=remove_selected,
        clear_all=clear_all,
        select_by_number=select_by_number,
        colorize=colorize,
        auto_colorize=auto_colorize,
    )
    _wire_guided(ui, handlers)


def _wire_guided(ui: SimpleNamespace, on: SimpleNamespace) -> None:
    """The Guided tab's events: every hint edit re-runs the model, one run at a time."""
    state = [ui.hints, ui.board, ui.table, ui.selected]
    run_inputs = [ui.image, ui.model, ui.hints, ui.use_saturation, ui.saturation, ui.reference]
    run_outputs = [ui.result, ui.timing]
    photo_views = [ui.image, ui.board, ui.another]
    edits = [  # (event, handler, inputs, outputs, API name); each edit re-runs the model
        (
            ui.image.change,
            on.load,
            [ui.image],
            [*state, ui.suggestions, ui.result, *photo_views],
            "load",
        ),
        (
            ui.board.select,
            on.click,
            [ui.image, ui.hints, ui.action, ui.selected, ui.color, ui.size, ui.model],
            [*state, ui.suggestions],
            "click",
        ),
        (
            ui.suggestions.input,
            on.use_suggestion,
            [ui.image, ui.hints, ui.selected, ui.suggestions],
            [*state, ui.color],
            "use_suggestion",
        ),
        (
            ui.recolor.click,
            on.recolor_selected,
            [ui.image, ui.hints, ui.selected, ui.color],
            state,
            "recolor",
        ),
        (
            ui.remove.click,
            on.remove_selected,
            [ui.image, ui.hints, ui.selected],
            [*state, ui.suggestions],
            "remove",
        ),
        (ui.clear.click, on.clear_all, [ui.image], [*state, ui.suggestions], "clear"),
    ]
    # One run at a time, in order: an earlier run finishing late must not overwrite a later one.
    in_order = {"concurrency_id": "guided-run", "concurrency_limit": 1}
    for event, fn, inputs, outputs, name in edits:
        edit = event(fn, inputs, outputs, preprocess=False, api_name=f"guided_{name}")
        keep_on_failure(edit, outputs)
        rerun = edit.success(
            on.auto_colorize,
            run_inputs,
            run_outputs,
            preprocess=False,
            api_visibility="private",
            **in_order,
        )
        clear_on_failure(rerun, run_outputs)
    upload_again = gr.update(value=None, visible=True)
    ui.another.click(lambda: upload_again, None, ui.image, queue=False, api_visibility="private")
    ui.selected.input(
        on.select_by_number,
        [ui.image, ui.hints, ui.selected],
        [ui.board, ui.suggestions],
        preprocess=False,
        api_visibility="private",
    )
    clear_on_failure(
        ui.run.click(
            on.colorize, run_inputs, run_outputs, preprocess=False, api_name="guided", **in_order
        ),
        run_outputs,
    )


# --- Reference and Prompt -------------------------------------------------------------------------
def reference_tab(catalog: ModelCatalog) -> None:
    names = catalog.available("reference")
    notice = conditioned_ui.tab_notice(catalog, "reference", "reference-based")
    gr.Markdown(notice or "The target takes its colours from the reference photo.")
    with gr.Row():
        target = gr.Image(type="filepath", label="Photo to colourise", height=260)
        with gr.Column():
            reference = gr.Image(
                type="filepath",
                label="Reference photo (in colour)",
                height=260,
                elem_id="reference-photo",
            )
            warning = gr.Markdown(label="Reference check", elem_id="reference-warning")
        result = gr.ImageSlider(label="Result", format="png", max_height=480)
    with gr.Row():
        model = gr.Dropdown(
            names, value=_first(names, "exemplar"), label="Model", interactive=bool(names)
        )
        run = gr.Button("Colourise", variant="primary", interactive=bool(names))
    timing = gr.Markdown(label="Status", elem_id="reference-status")

    @handler
    def check_reference(ref):
        return conditioned_ui.describe_reference(ref, catalog)

    @handler
    def colorize_after_reference(value, ref, model_name):
        out = conditioned_ui.run_reference(value, ref, model_name, catalog)
        return (out.gray_png, out.color_png), out.status()

    reference.change(
        check_reference, reference, warning, preprocess=False, api_name="check_reference"
    )
    clear_on_failure(
        run.click(
            colorize_after_reference,
            [target, reference, model],
            [result, timing],
            preprocess=False,
            api_name="reference",
        ),
        [result, timing],
    )


def prompt_tab(catalog: ModelCatalog) -> None:
    names = catalog.available("prompt")
    gr.Markdown(
        conditioned_ui.prompt_notice(catalog) or "Describe the colours you want.",
        elem_id="prompt-notice",
    )
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
            timing = gr.Markdown(label="Status")

    @handler
    def colorize_from_prompt(value, text, neg, n_steps, n_seed, model_name):
        out = conditioned_ui.run_prompt(
            value, text, model_name, catalog, negative_prompt=neg, steps=n_steps, seed=n_seed
        )
        return (out.gray_png, out.color_png), out.status()

    clear_on_failure(
        run.click(
            colorize_from_prompt,
            [target, prompt, negative, steps, seed, model],
            [result, timing],
            preprocess=False,
            api_name="prompt",
        ),
        [result, timing],
    )


# --- Batch ----------------------------------------------------------------------------------------
def batch_tab(catalog: ModelCatalog) -> None:
    automatic = catalog.available(automatic=True)
    settings = catalog.settings
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
            model = gr.Dropdown(automatic, value=catalog.default_model(), label="Model")
            run = gr.Button("Colourise all", variant="primary", elem_id="batch-run")
        with gr.Column():
            status = gr.Markdown(label="Summary", elem_id="batch-status")
            archive = gr.File(label="Colourised photos (zip)", elem_id="batch-zip")
            failures = gr.Dataframe(
                headers=batch_ui.FAILURE_HEADERS,
                interactive=False,
                label="Failed files",
                elem_id="batch-failures",
                wrap=True,
                column_widths=["35%", "65%"],
                visible=False,
            )
            previews = gr.Gallery(
                label="Preview", columns=4, height=320, elem_id="batch-preview", visible=False
            )

    @handler(gpu_seconds=120)
    def colorize_all(values, model_name, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        result = batch_ui.run_batch(
            values, model_name, catalog, progress=lambda f, d: progress(f, desc=d)
        )
        return (
            result.summary(),
            result.zip_path,
            gr.update(value=result.failures_table(), visible=bool(result.failures)),
            gr.update(value=result.previews, visible=bool(result.previews)),
        )

    outputs = [status, archive, failures, previews]
    clear_on_failure(
        run.click(colorize_all, [files, model], outputs, preprocess=False, api_name="batch"),
        outputs,
        hide=(failures, previews),
    )


# --- the app --------------------------------------------------------------------------------------
def build_app(catalog: ModelCatalog | None = None) -> gr.Blocks:
    catalog = catalog or ModelCatalog(AppSettings.from_env())
    with gr.Blocks(title="DeepColor", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(
            "# DeepColor\nColourise black-and-white photos and compare the methods side by side. "
            f"Default model: `{catalog.default_model()}` ({catalog.default_choice().reason}); "
            "running on "
            f"{device_label(catalog, ON_ZERO_GPU)}."
        )
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                compare_tab(catalog)
            with gr.Tab("Guided", id="guided"):
                guided_tab(catalog)
            with gr.Tab("Reference", id="reference"):
                reference_tab(catalog)
            with gr.Tab("Prompt", id="prompt"):
                prompt_tab(catalog)
            with gr.Tab("Batch", id="batch"):
                batch_tab(catalog)
            with gr.Tab("Video", id="video"):
                video_ui.video_tab(catalog, handler, clear_on_failure)
            with gr.Tab("Models", id="models"):
                gr.Markdown(models_markdown(catalog), elem_id="models-table")
    demo.queue(
        default_concurrency_limit=catalog.settings.concurrency, max_size=catalog.settings.queue_size
    )
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
        demo = build_app(ModelCatalog(settings))
    except DeviceUnavailable as exc:  # a bad DEEPCOLOR_DEVICE: say so before serving anything
        raise SystemExit(f"error: DEEPCOLOR_DEVICE={settings.device!r}: {exc}") from None
    except UnknownModel as exc:  # a mistyped DEEPCOLOR_DEFAULT_MODEL, likewise
        raise SystemExit(f"error: {exc}") from None
    demo.launch(
        server_name=args.host,  # None: Gradio reads GRADIO_SERVER_NAME (a Space sets 0.0.0.0)
        server_port=args.port,  # None: GRADIO_SERVER_PORT, else 7860
        share=args.share or None,
        max_file_size=settings.max_file_size,
        allowed_paths=[str(EXAMPLES_DIR)],  # the examples, when started from another folder
        show_error=False,  # unexpected errors: a generic message, the traceback stays in the log
        css=CSS,
        head=guided_ui.SUGGESTION_SCRIPT,
        footer_links=["api", "gradio"],
    )


if __name__ == "__main__":
    main()
