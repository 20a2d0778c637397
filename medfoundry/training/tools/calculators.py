"""Clinical calculators with verifiable outputs, as tools a policy can call (Google-style docstrings: TRL builds the
JSON schema from them). Each returns a short string that leads with the number, so a final answer can be checked
against it.

Formulas:
  eGFR   CKD-EPI 2021 creatinine equation without race (Inker et al., NEJM 2021;385:1737-49):
         142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age x 1.012 [female];
         k = 0.7 (female) / 0.9 (male); a = -0.241 (female) / -0.302 (male)
  BMI    weight (kg) / height (m)^2
  CHA2DS2-VASc  CHF 1, hypertension 1, age >= 75 2, diabetes 1, stroke/TIA/thromboembolism 2, vascular disease 1,
         age 65-74 1, female sex 1 (Lip et al., Chest 2010;137:263-72)
  QTc    Bazett: QT / sqrt(RR), RR = 60 / heart rate (s)
  Anion gap  Na - (Cl + HCO3), mmol/L
"""

from __future__ import annotations

import math


def _sex(sex: str) -> str:
    value = sex.strip().lower()
    if value in ("f", "female", "woman"):
        return "female"
    if value in ("m", "male", "man"):
        return "male"
    raise ValueError(f"sex {sex!r}: use 'female' or 'male'")


def egfr_ckd_epi_2021(creatinine_mg_dl: float, age: float, sex: str) -> str:
    """
    Estimate GFR with the CKD-EPI 2021 creatinine equation (race-free).

    Args:
        creatinine_mg_dl: Serum creatinine in mg/dL.
        age: Age in years (18 or older).
        sex: "female" or "male".

    Returns:
        The eGFR in mL/min/1.73 m2, rounded to a whole number.
    """
    if creatinine_mg_dl <= 0 or age < 18:
        raise ValueError("creatinine must be > 0 mg/dL and age >= 18 years")
    female = _sex(sex) == "female"
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    value = 142 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age * (1.012 if female else 1.0)
    return f"{round(value)} mL/min/1.73 m2 (CKD-EPI 2021)"


def bmi(weight_kg: float, height_cm: float) -> str:
    """
    Body mass index.

    Args:
        weight_kg: Body weight in kilograms.
        height_cm: Height in centimetres.

    Returns:
        The BMI in kg/m2 with one decimal.
    """
    if weight_kg <= 0 or height_cm <= 0:
        raise ValueError("weight and height must be positive")
    return f"{weight_kg / (height_cm / 100) ** 2:.1f} kg/m2"


def cha2ds2_vasc(
    age: int,
    sex: str,
    heart_failure: bool = False,
    hypertension: bool = False,
    diabetes: bool = False,
    stroke_or_tia: bool = False,
    vascular_disease: bool = False,
) -> str:
    """
    CHA2DS2-VASc stroke-risk score for atrial fibrillation.

    Args:
        age: Age in years.
        sex: "female" or "male".
        heart_failure: Congestive heart failure.
        hypertension: Hypertension.
        diabetes: Diabetes mellitus.
        stroke_or_tia: Prior stroke, TIA or thromboembolism.
        vascular_disease: Prior myocardial infarction, peripheral artery disease or aortic plaque.

    Returns:
        The score (0-9).
    """
    score = (2 if age >= 75 else 1 if age >= 65 else 0) + (1 if _sex(sex) == "female" else 0)
    score += int(heart_failure) + int(hypertension) + int(diabetes) + 2 * int(stroke_or_tia) + int(vascular_disease)
    return f"{score} (CHA2DS2-VASc)"


def qtc_bazett(qt_ms: float, heart_rate_bpm: float) -> str:
    """
    Heart-rate-corrected QT interval (Bazett).

    Args:
        qt_ms: Measured QT interval in milliseconds.
        heart_rate_bpm: Heart rate in beats per minute.

    Returns:
        The QTc in milliseconds, rounded to a whole number.
    """
    if qt_ms <= 0 or heart_rate_bpm <= 0:
        raise ValueError("QT and heart rate must be positive")
    return f"{round(qt_ms / math.sqrt(60.0 / heart_rate_bpm))} ms (Bazett)"


def anion_gap(sodium: float, chloride: float, bicarbonate: float) -> str:
    """
    Serum anion gap.

    Args:
        sodium: Sodium in mmol/L.
        chloride: Chloride in mmol/L.
        bicarbonate: Bicarbonate in mmol/L.

    Returns:
        The anion gap in mmol/L.
    """
    return f"{sodium - (chloride + bicarbonate):g} mmol/L"
