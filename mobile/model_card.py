"""MODEL_CARD.md for the app package, filled from model.json and the verification report."""

from __future__ import annotations


def _counts_by_source(counts: dict) -> dict[str, dict[str, int]]:
    """Packages before several sources had one flat {class: n}; newer ones {source: {class: n}}."""
    if all(isinstance(v, int) for v in counts.values()):
        return {"all": counts}
    return counts


def percent(value: float | None) -> str:
    """A share as a percentage; "n/a" where there were no labels to score against."""
    return "n/a" if value is None else f"{value:.2%}"


def per_class_recall(matrix: list[list[int]], class_names: list[str]) -> str:
    """'eosinophil 0.84 (of 623), …' from a confusion matrix (rows are true classes)."""
    return ", ".join(f"{name} {row[i] / sum(row):.2f} (of {sum(row)})" if sum(row) else f"{name} n/a (none)"
                     for i, (name, row) in enumerate(zip(class_names, matrix)))


def frequent_confusions(matrix: list[list[int]], class_names: list[str], top: int = 2) -> str:
    """The ``top`` largest off-diagonal cells, as 'monocyte taken for neutrophil (191 of 620)'."""
    cells = sorted(((row[j], i, j) for i, row in enumerate(matrix) for j in range(len(row)) if i != j and row[j]),
                   reverse=True)[:top]
    return "; ".join(f"{class_names[i]} taken for {class_names[j]} ({n} of {sum(matrix[i])})" for n, i, j in cells)


def render_model_card(description: dict, report: dict) -> str:
    metrics = description["metrics"]
    names = description["class_names"]
    matrix = metrics.get("confusion_matrix")
    # A differential count is only as good as its worst class; one accuracy figure hides which.
    recall_text = (f"\n\nRecall per class (the share of each class's cells given its label; "
                   f"{description['variant']}, {metrics['verified_on']}): {per_class_recall(matrix, names)}."
                   if matrix else "")
    confusions = frequent_confusions(matrix, names) if matrix else ""
    confusion_text = (f"- Most frequent mistakes on {metrics['verified_on']}: {confusions}.\n" if confusions
                      else "")
    inp = description["input"]
    quant = inp["quantization"]
    quant_text = (f"scale {quant['scale']:.6g}, zero point {quant['zero_point']}" if quant
                  else "none (float input)")
    float_text = (f"\n- Layers kept in float32 (the rest is int8): {', '.join(description['float_layers'])}."
                  if description.get("float_layers") else "")
    if description.get("bias_correction"):
        float_text += ("\n- Biases corrected for int8 weight rounding: each layer's expected rounding shift,"
                       " measured on the calibration crops, was subtracted before conversion.")
    qat = description.get("quantisation_aware_training")
    if qat:
        float_text += (f"\n- Quantisation-aware fine-tuning: before conversion, a copy of the Keras model was trained"
                       f" for {qat['steps']} steps (Adam, learning rate {qat['learning_rate']:g}) through a simulation"
                       f" of int8 rounding, to reproduce the float model's outputs on {qat['train_images']} crops"
                       f" of {qat.get('images_from', 'TRAIN')} images. The metrics below compare the int8 model with"
                       " the untouched float model.")
    output = description["output"]
    if metrics.get("per_source"):  # scored once on each test set, the Keras model beside it
        metrics_text = f"Through LiteRT, each test set scored once for the shipped {description['variant']}:"
    elif metrics.get("accuracy") is None:  # adapted to a lab whose cells have no labels, and no test set given
        metrics_text = ("Not scored on labelled cells: no test set was given. The shipped variant's agreement "
                        "with the Keras model it came from is below.")
    else:
        metrics_text = (f"On {metrics['n_images']} images of {metrics['verified_on']} through LiteRT: accuracy "
                        f"{metrics['accuracy']:.2%} (the Keras model it came from: "
                        f"{metrics['reference_accuracy']:.2%}), top-1 agreement with Keras "
                        f"{metrics['top1_agreement']:.2%}.")
    per_source = metrics.get("per_source") or {}
    per_source_text = ("\n\n| test set | images | accuracy (cells outside the four: share flagged \"other\") "
                       "| the Keras model | top-1 agreement |\n|---|---|---|---|---|\n"
                       + "\n".join(f"| {name} | {r.get('n_images', '')} | {r['accuracy']:.2%} | "
                                   f"{r['reference_accuracy']:.2%} | {r['top1_agreement']:.2%} |"
                                   for name, r in per_source.items())
                       if per_source else "")
    other_text = ("Cells outside the four classes (basophils, immature granulocytes, erythroblasts, "
                  "platelets) should come out as \"other\"; blasts and smudge cells were not in training."
                  if "other" in description["class_names"] else
                  "Basophils, blasts and other cell types are outside the four classes and will be given "
                  "one of them.")
    training = description["training"]
    adapted = (f" Then adapted without labels to the cells of {training['adapted_to']} (`hv adapt`): the int8 model "
               "was calibrated, fine-tuned and chosen on that lab's unlabelled cells." if training.get("adapted_to")
               else "")
    runs = description.get("averaged_runs") or []
    averaged = (f" The model is the average of {len(runs)} runs of one recipe ({', '.join(r['name'] for r in runs)}): "
                "one graph holding each run's network, whose class probabilities it averages; each run's time per "
                "cell." if runs else "")
    counts = "; ".join(f"{source}: " + ", ".join(f"{name} {n}" for name, n in per_class.items() if n)
                       for source, per_class in _counts_by_source(description["training"]["counts"]).items())
    stain_text = ("\n- A crop whose red cells are not eosin-pink (a stain unlike the training labs' Romanowsky-type"
                  " ones) has its colours turned to the training labs' before it goes in, and a crop lit by a lamp"
                  " of another colour gets the training labs' plasma (stain_correction = 'auto', `model.json` →"
                  " `crop` → `stain_correction_how`); other crops go in as they are."
                  if description["crop"].get("stain_correction") == "auto" else
                  "\n- Every crop has its colours turned to the training labs' and their plasma put in before it"
                  " goes in, as in training (stain_correction = 'always', `model.json` → `crop` →"
                  " `stain_correction_how`)."
                  if description["crop"].get("stain_correction") == "always" else "")
    smallest = description["crop"].get("min_cell_diameter_px")
    small_text = (f"\n- Cells under {smallest:g} px across (a lower magnification than the training images') reach the"
                  " model enlarged, with less detail: their labels are less sure (`model.json` → `crop` →"
                  " `small_cells`: the bar for one still image is lower)." if smallest else "")
    rows = "\n".join(
        f"| {v} | {r['size_mb']} | {percent(r['accuracy'])} | {r['top1_agreement']:.2%} | {r['latency_ms_1_thread']} |"
        for v, r in report["variants"].items()
    )
    return f"""# HematoVision white-cell classifier ({description['variant']} TFLite)

## Intended use
Research and teaching: sorting located white blood cells of a stained peripheral blood
smear into {', '.join(description['class_names'])}. **Not a medical device and not a
diagnosis**: a differential count from it must be checked by a qualified person.

## Input and output
- Input: {inp['shape']} {inp['dtype']}, {inp['layout']}, {inp['colour_order']}, raw pixel values
  {inp['pixel_range'][0]}–{inp['pixel_range'][1]}; {inp['normalisation']}. Quantisation: {quant_text}.
- Output: {output['shape']} {output['dtype']}, {output['meaning']}.{float_text}
- The input is a crop around one located white cell: a square of
  {description['crop']['crop_context']} expected white-cell diameters (cell_diameter_frac =
  {description['crop']['cell_diameter_frac']!r}: "auto" measures it in each frame from the red cells),
  filled by {description['crop']['edge_fill']} outside the frame, resized to the input size
  (see `model.json` → `crop`).{stain_text}

## Data
Trained on {training['data']}{f" (images per class: {counts})" if counts else ""}, input mode
"{training['input']}".{adapted} blood-cells/ holds augmented copies of a few hundred
original fields; pbc/ is the PBC data set (Acevedo et al., 2020, CC BY 4.0). Backbone:
{description['backbone']}, ImageNet-pretrained.{averaged}

## Metrics
{metrics_text}{per_source_text}{recall_text}

The variants, on {report.get('chosen_on', 'the verification images')} ({report['n_images']} crops),
where the variant was chosen:

| variant | size (MB) | accuracy | agreement with Keras | ms/image, 1 thread |
|---|---|---|---|---|
{rows}

Shipped variant: **{report['shipped']}** because {report['reason']}.

## Known failure modes
{confusion_text}- Eosinophil vs neutrophil is a hard pair: both are granulocytes with lobed nuclei.
- {other_text}
- Trained on {training['data']}; a lab with
  another stain, magnification or white balance can still lower accuracy. With "auto" the
  crop scale comes from the frame's red cells; a frame without them uses the fallback share.{small_text}
- Smudged or broken cells and two touching cells may be located as one cell.
"""
