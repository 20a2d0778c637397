import torch

from medfoundry.models.chat import encode, render
from medfoundry.models.generation import ChatPrompt, generate


def _prompts(noise_image):
    return [
        ChatPrompt(text="What does the chest radiograph show?", image=noise_image(0)),
        ChatPrompt(text="Is metformin used for type 2 diabetes? Answer yes or no."),
        ChatPrompt(text="Describe the scan.", image=noise_image(1, (90, 60))),
        ChatPrompt(messages=[{"role": "user", "content": "List one symptom of anemia."}], system="Be brief."),
        ChatPrompt(text="Brain MRI findings?", image=noise_image(2, (56, 56))),
    ]


def test_batched_generation_equals_one_at_a_time(tiny_model, noise_image):
    prompts = _prompts(noise_image)
    batched = generate(tiny_model, prompts, max_new_tokens=10, batch_size=8)
    single = [generate(tiny_model, [p], max_new_tokens=10)[0] for p in prompts]
    assert batched == single
    assert generate(tiny_model, prompts, max_new_tokens=10, batch_size=2) == batched  # deterministic
    assert len(batched) == len(prompts) and all(isinstance(text, str) for text in batched)


def test_generation_after_reload_is_identical(tiny_model, tiny_model_dir, noise_image):
    from medfoundry.models.loading import load_model

    prompts = _prompts(noise_image)[:3]
    assert generate(load_model(tiny_model_dir), prompts, 6) == generate(tiny_model, prompts, 6)


def test_image_and_text_forward_backward(tiny_model, noise_image):
    prompts = [ChatPrompt(text="What is shown?", image=noise_image(3)), ChatPrompt(text="No image here.")]
    texts = [render(tiny_model, p.to_messages(), add_generation_prompt=True) for p in prompts]
    batch = encode(tiny_model, texts, [p.image for p in prompts])
    image_token_id = tiny_model.processor.image_token_id
    assert (batch["input_ids"][0] == image_token_id).sum() > 0
    assert (batch["input_ids"][1] == image_token_id).sum() == 0
    assert batch["pixel_values"].shape[0] > 0 and batch["image_grid_thw"].shape == (1, 3)

    model = tiny_model.model
    model.zero_grad()
    out = model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    vision_grad = [p.grad for n, p in model.named_parameters() if "visual" in n and p.grad is not None]
    assert vision_grad and any(g.abs().sum() > 0 for g in vision_grad)  # the image reaches the loss
    model.zero_grad()


def test_image_changes_the_logits(tiny_model, noise_image):
    prompt_a = ChatPrompt(text="What is shown?", image=noise_image(4))
    prompt_b = ChatPrompt(text="What is shown?", image=noise_image(5))
    logits = []
    for prompt in (prompt_a, prompt_b):
        text = render(tiny_model, prompt.to_messages(), add_generation_prompt=True)
        batch = encode(tiny_model, [text], [prompt.image])
        with torch.no_grad():
            logits.append(tiny_model.model(**batch).logits[0, -1])
    assert not torch.allclose(logits[0], logits[1])
