"""Healthcare: patients, providers, ICD-10 diagnoses; visits and prescriptions.

Tables and columns follow the Studio's Healthcare workload (reference/studio-today.md §4.4:
DIM_PATIENT.PatientID/PatientName/Gender/DateOfBirth/Email, ...) in snake_case.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from prefect_ombudsman.datagen import pools as P
from prefect_ombudsman.datagen.calendar import DIM_DATE
from prefect_ombudsman.datagen.catalog import (
    BIGINT,
    DATE,
    DECIMAL,
    INT,
    TIMESTAMP,
    VARCHAR,
    Column,
    StarSchema,
    TableSpec,
)
from prefect_ombudsman.datagen.chunks import ChunkContext

# (ICD-10-CM code, description, chapter, relative prevalence, chronic)
DIAGNOSES: tuple[tuple[str, str, str, float, int], ...] = (
    ("I10", "Essential (primary) hypertension", "Circulatory", 9.0, 1),
    ("E11.9", "Type 2 diabetes mellitus without complications", "Endocrine", 6.0, 1),
    ("E11.65", "Type 2 diabetes mellitus with hyperglycemia", "Endocrine", 1.5, 1),
    ("E78.5", "Hyperlipidemia, unspecified", "Endocrine", 5.5, 1),
    ("E66.9", "Obesity, unspecified", "Endocrine", 2.0, 1),
    ("E03.9", "Hypothyroidism, unspecified", "Endocrine", 2.2, 1),
    ("J45.909", "Unspecified asthma, uncomplicated", "Respiratory", 2.5, 1),
    ("J44.9", "Chronic obstructive pulmonary disease, unspecified", "Respiratory", 1.6, 1),
    ("J06.9", "Acute upper respiratory infection, unspecified", "Respiratory", 5.0, 0),
    ("J02.9", "Acute pharyngitis, unspecified", "Respiratory", 2.2, 0),
    ("J01.90", "Acute sinusitis, unspecified", "Respiratory", 1.8, 0),
    ("J18.9", "Pneumonia, unspecified organism", "Respiratory", 0.9, 0),
    ("J11.1", "Influenza with other respiratory manifestations", "Respiratory", 1.4, 0),
    ("U07.1", "COVID-19", "Special purposes", 1.2, 0),
    ("I25.10", "Atherosclerotic heart disease of native coronary artery", "Circulatory", 1.3, 1),
    ("I48.91", "Unspecified atrial fibrillation", "Circulatory", 0.9, 1),
    ("I50.9", "Heart failure, unspecified", "Circulatory", 0.7, 1),
    ("F32.9", "Major depressive disorder, single episode, unspecified", "Mental", 2.4, 1),
    ("F41.1", "Generalized anxiety disorder", "Mental", 2.2, 1),
    ("F90.0", "Attention-deficit hyperactivity disorder, inattentive type", "Mental", 0.8, 1),
    ("G43.909", "Migraine, unspecified, not intractable", "Nervous", 1.1, 1),
    ("G47.33", "Obstructive sleep apnea", "Nervous", 0.9, 1),
    ("M54.50", "Low back pain, unspecified", "Musculoskeletal", 3.2, 0),
    ("M25.561", "Pain in right knee", "Musculoskeletal", 1.3, 0),
    ("M17.11", "Unilateral primary osteoarthritis, right knee", "Musculoskeletal", 0.8, 1),
    ("M79.7", "Fibromyalgia", "Musculoskeletal", 0.4, 1),
    ("K21.9", "Gastro-esophageal reflux disease without esophagitis", "Digestive", 2.0, 1),
    ("K59.00", "Constipation, unspecified", "Digestive", 0.7, 0),
    ("K52.9", "Noninfective gastroenteritis and colitis, unspecified", "Digestive", 0.8, 0),
    ("N39.0", "Urinary tract infection, site not specified", "Genitourinary", 1.6, 0),
    ("N18.3", "Chronic kidney disease, stage 3", "Genitourinary", 0.6, 1),
    ("L30.9", "Dermatitis, unspecified", "Skin", 0.9, 0),
    ("L70.0", "Acne vulgaris", "Skin", 0.6, 0),
    ("H10.9", "Unspecified conjunctivitis", "Eye", 0.6, 0),
    ("H66.90", "Otitis media, unspecified, unspecified ear", "Ear", 1.0, 0),
    ("R05.9", "Cough, unspecified", "Symptoms", 1.5, 0),
    ("R51.9", "Headache, unspecified", "Symptoms", 1.0, 0),
    ("R10.9", "Unspecified abdominal pain", "Symptoms", 1.2, 0),
    ("R07.9", "Chest pain, unspecified", "Symptoms", 0.9, 0),
    (
        "Z00.00",
        "Encounter for general adult medical examination without abnormal findings",
        "Factors",
        5.5,
        0,
    ),
    (
        "Z00.129",
        "Encounter for routine child health examination without abnormal findings",
        "Factors",
        2.0,
        0,
    ),
    ("Z23", "Encounter for immunization", "Factors", 2.5, 0),
    (
        "S93.401A",
        "Sprain of unspecified ligament of right ankle, initial encounter",
        "Injury",
        0.5,
        0,
    ),
    (
        "S61.411A",
        "Laceration without foreign body of right hand, initial encounter",
        "Injury",
        0.3,
        0,
    ),
    (
        "C50.911",
        "Malignant neoplasm of unspecified site of right female breast",
        "Neoplasms",
        0.3,
        1,
    ),
    ("C61", "Malignant neoplasm of prostate", "Neoplasms", 0.3, 1),
    ("D64.9", "Anemia, unspecified", "Blood", 0.7, 0),
    ("B34.9", "Viral infection, unspecified", "Infectious", 1.0, 0),
    ("A09", "Infectious gastroenteritis and colitis, unspecified", "Infectious", 0.5, 0),
    ("O80", "Encounter for full-term uncomplicated delivery", "Pregnancy", 0.3, 0),
)

# (generic name, strengths, typical cost of a 30-day supply in dollars)
MEDICATIONS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("Lisinopril", ("5 mg", "10 mg", "20 mg", "40 mg"), 9.0),
    ("Amlodipine", ("2.5 mg", "5 mg", "10 mg"), 8.0),
    ("Metformin", ("500 mg", "850 mg", "1000 mg"), 7.0),
    ("Atorvastatin", ("10 mg", "20 mg", "40 mg", "80 mg"), 11.0),
    ("Rosuvastatin", ("5 mg", "10 mg", "20 mg"), 14.0),
    ("Levothyroxine", ("25 mcg", "50 mcg", "75 mcg", "100 mcg"), 12.0),
    ("Omeprazole", ("20 mg", "40 mg"), 10.0),
    ("Losartan", ("25 mg", "50 mg", "100 mg"), 10.0),
    ("Hydrochlorothiazide", ("12.5 mg", "25 mg"), 6.0),
    ("Metoprolol Succinate", ("25 mg", "50 mg", "100 mg"), 13.0),
    ("Albuterol", ("90 mcg/actuation",), 32.0),
    ("Fluticasone", ("50 mcg/spray", "110 mcg"), 25.0),
    ("Montelukast", ("10 mg",), 12.0),
    ("Sertraline", ("25 mg", "50 mg", "100 mg"), 9.0),
    ("Escitalopram", ("5 mg", "10 mg", "20 mg"), 10.0),
    ("Bupropion XL", ("150 mg", "300 mg"), 22.0),
    ("Gabapentin", ("100 mg", "300 mg", "600 mg"), 11.0),
    ("Amoxicillin", ("250 mg", "500 mg", "875 mg"), 8.0),
    ("Azithromycin", ("250 mg", "500 mg"), 12.0),
    ("Cephalexin", ("250 mg", "500 mg"), 10.0),
    ("Prednisone", ("5 mg", "10 mg", "20 mg"), 6.0),
    ("Ibuprofen", ("400 mg", "600 mg", "800 mg"), 5.0),
    ("Meloxicam", ("7.5 mg", "15 mg"), 7.0),
    ("Insulin Glargine", ("100 units/mL",), 310.0),
    ("Empagliflozin", ("10 mg", "25 mg"), 550.0),
    ("Semaglutide", ("0.5 mg", "1 mg", "2 mg"), 900.0),
    ("Apixaban", ("2.5 mg", "5 mg"), 520.0),
    ("Warfarin", ("2 mg", "5 mg"), 9.0),
    ("Clopidogrel", ("75 mg",), 11.0),
    ("Pantoprazole", ("20 mg", "40 mg"), 10.0),
    ("Tamsulosin", ("0.4 mg",), 12.0),
    ("Cetirizine", ("10 mg",), 5.0),
    ("Methylphenidate ER", ("18 mg", "36 mg", "54 mg"), 95.0),
    ("Sumatriptan", ("50 mg", "100 mg"), 18.0),
    ("Ondansetron", ("4 mg", "8 mg"), 9.0),
    ("Oseltamivir", ("75 mg",), 45.0),
)

SPECIALTIES = (
    "Family Medicine",
    "Internal Medicine",
    "Pediatrics",
    "Cardiology",
    "Endocrinology",
    "Pulmonology",
    "Orthopedic Surgery",
    "Dermatology",
    "Neurology",
    "Psychiatry",
    "Obstetrics and Gynecology",
    "Emergency Medicine",
    "Oncology",
    "Gastroenterology",
    "Nephrology",
    "Urology",
)
_SPECIALTY_WEIGHTS = (
    0.20,
    0.16,
    0.10,
    0.07,
    0.04,
    0.04,
    0.05,
    0.04,
    0.04,
    0.05,
    0.05,
    0.07,
    0.03,
    0.03,
    0.015,
    0.015,
)
FACILITY_KINDS = (
    "General Hospital",
    "Medical Center",
    "Family Clinic",
    "Health Center",
    "Specialty Clinic",
    "Urgent Care",
)
INSURERS = (
    "Medicare",
    "Medicaid",
    "Blue Cross Blue Shield",
    "UnitedHealthcare",
    "Aetna",
    "Cigna",
    "Humana",
    "Kaiser Permanente",
    "Self-Pay",
)
_INSURER_WEIGHTS = (0.18, 0.17, 0.20, 0.15, 0.08, 0.07, 0.05, 0.05, 0.05)
BLOOD_TYPES = ("O+", "A+", "B+", "AB+", "O-", "A-", "B-", "AB-")
_BLOOD_WEIGHTS = (0.374, 0.357, 0.085, 0.034, 0.066, 0.063, 0.015, 0.006)
# visit type: (weight, median minutes, median charge)
VISIT_TYPES: dict[str, tuple[float, float, float]] = {
    "Office Visit": (0.58, 22.0, 165.0),
    "Telehealth": (0.14, 15.0, 95.0),
    "Urgent Care": (0.12, 45.0, 210.0),
    "Emergency": (0.10, 210.0, 1350.0),
    "Inpatient": (0.03, 2880.0, 12500.0),
    "Preventive": (0.03, 30.0, 220.0),
}
_VISIT_NAMES = pa.array(list(VISIT_TYPES), pa.string())
_VISIT_WEIGHTS = np.array([v[0] for v in VISIT_TYPES.values()])
_VISIT_MINUTES = np.array([v[1] for v in VISIT_TYPES.values()])
_VISIT_CHARGE = np.array([v[2] for v in VISIT_TYPES.values()])


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


@lru_cache(maxsize=4)
def diagnosis_rows(count: int) -> dict[str, Any]:
    """The curated ICD-10 list, extended with numbered variants when more rows are asked for."""
    base = len(DIAGNOSES)
    idx = np.arange(count) % base
    rounds = np.arange(count) // base
    code = [
        DIAGNOSES[i][0] + (f"{r}" if r and "." in DIAGNOSES[i][0] else (f".{r}" if r else ""))
        for i, r in zip(idx, rounds, strict=True)
    ]
    name = [
        DIAGNOSES[i][1] + (f", variant {r}" if r else "") for i, r in zip(idx, rounds, strict=True)
    ]
    return {
        "diagnosis_code": pa.array(code, pa.string()),
        "diagnosis_name": pa.array(name, pa.string()),
        "category": pa.array([DIAGNOSES[i][2] for i in idx], pa.string()),
        "is_chronic": np.array([DIAGNOSES[i][4] for i in idx], dtype=np.int64),
        "weight": np.array([DIAGNOSES[i][3] / (1 + r) for i, r in zip(idx, rounds, strict=True)]),
    }


def build_patient(ctx: ChunkContext) -> dict[str, Any]:
    rng, n, keys = ctx.rng, ctx.count, ctx.keys
    first, last, female = P.person_names(rng, n)
    gender = np.where(female, "F", "M").astype(object)
    gender[rng.random(n) < 0.004] = "U"
    address = P.addresses(rng, n)
    age_years = np.clip(rng.gamma(2.6, 16.0, n), 0, 99)
    birth = np.datetime64(ctx.calendar.end, "D") - (age_years * 365.25).astype(np.int64)
    return {
        "patient_id": keys,
        "mrn": P.join("MRN", P.digits(keys + 10_000_000, 9)),
        "patient_name": P.join(first, " ", last),
        "first_name": first,
        "last_name": last,
        "gender": pa.array(gender, pa.string()),
        "date_of_birth": birth,
        "email": P.emails(rng, first, last, keys),
        "phone": P.phones(rng, n),
        **address,
        "blood_type": P.choice(rng, BLOOD_TYPES, n, _BLOOD_WEIGHTS),
        "insurance_provider": P.choice(rng, INSURERS, n, _INSURER_WEIGHTS),
    }


def build_provider(ctx: ChunkContext) -> dict[str, Any]:
    rng, n, keys = ctx.rng, ctx.count, ctx.keys
    first, last, _ = P.person_names(rng, n)
    address = P.addresses(rng, n)
    return {
        "provider_id": keys,
        "npi": P.join("1", P.digits(keys * 7919 % 1_000_000_000, 9)),
        "provider_name": P.join("Dr. ", first, " ", last),
        "specialty": P.choice(rng, SPECIALTIES, n, _SPECIALTY_WEIGHTS),
        "facility_name": P.join(address["city"], " ", P.choice(rng, FACILITY_KINDS, n)),
        "city": address["city"],
        "state": address["state"],
    }


def build_diagnosis(ctx: ChunkContext) -> dict[str, Any]:
    rows = diagnosis_rows(ctx.start + ctx.count)
    sl = slice(ctx.start, ctx.start + ctx.count)
    return {
        "diagnosis_id": ctx.keys,
        "diagnosis_code": rows["diagnosis_code"][sl],
        "diagnosis_name": rows["diagnosis_name"][sl],
        "category": rows["category"][sl],
        "is_chronic": rows["is_chronic"][sl],
    }


def build_visits(ctx: ChunkContext) -> dict[str, Any]:
    rng, n = ctx.rng, ctx.count
    kind = P.weighted(rng, _VISIT_WEIGHTS / _VISIT_WEIGHTS.sum(), n)
    minutes = np.maximum(np.round(_VISIT_MINUTES[kind] * rng.gamma(4.0, 0.25, n)), 5).astype(
        np.int64
    )
    charge = np.round(_VISIT_CHARGE[kind] * np.exp(rng.normal(0, 0.35, n)) * 100).astype(np.int64)
    paid_share = np.where(rng.random(n) < 0.08, 0.0, rng.uniform(0.55, 1.0, n))
    diagnosis_weights = diagnosis_rows(ctx.size("dim_diagnosis"))["weight"]
    days = ctx.fact_dates()
    start_minute = np.where(
        kind == 3, rng.integers(0, 24 * 60, n), rng.integers(8 * 60, 17 * 60 + 30, n) // 15 * 15
    )
    when = ctx.calendar.dates[days].astype("datetime64[s]") + start_minute * 60
    return {
        "visit_id": ctx.keys,
        "patient_id": P.skewed_keys(rng, ctx.size("dim_patient"), n, 1.3),
        "provider_id": P.skewed_keys(rng, ctx.size("dim_provider"), n, 1.2),
        "diagnosis_id": P.weighted(rng, diagnosis_weights / diagnosis_weights.sum(), n) + 1,
        "date_key": ctx.calendar.keys[days],
        "visit_date": when,
        "visit_type": _VISIT_NAMES.take(pa.array(kind)),
        "visit_duration": minutes,
        "charge_amount": charge,
        "paid_amount": np.round(charge * paid_share).astype(np.int64),
    }


_MED_NAMES = pa.array([m[0] for m in MEDICATIONS], pa.string())
_MED_STRENGTHS = pa.array([s for m in MEDICATIONS for s in m[1]], pa.string())
_MED_STRENGTH_START = np.cumsum([0] + [len(m[1]) for m in MEDICATIONS])[:-1]
_MED_STRENGTH_COUNT = np.array([len(m[1]) for m in MEDICATIONS])
_MED_COST = np.array([m[2] for m in MEDICATIONS])


def build_medications(ctx: ChunkContext) -> dict[str, Any]:
    rng, n = ctx.rng, ctx.count
    med = P.weighted(
        rng,
        1.0
        / np.arange(1, len(MEDICATIONS) + 1) ** 0.5
        / np.sum(1.0 / np.arange(1, len(MEDICATIONS) + 1) ** 0.5),
        n,
    )
    strength = _MED_STRENGTH_START[med] + (rng.random(n) * _MED_STRENGTH_COUNT[med]).astype(
        np.int64
    )
    supply = rng.choice(
        np.array([7, 10, 14, 30, 60, 90]), n, p=[0.05, 0.08, 0.07, 0.55, 0.05, 0.20]
    )
    days = ctx.fact_dates()
    cost = np.round(_MED_COST[med] * supply / 30.0 * np.exp(rng.normal(0, 0.15, n)) * 100).astype(
        np.int64
    )
    return {
        "prescription_id": ctx.keys,
        "patient_id": P.skewed_keys(rng, ctx.size("dim_patient"), n, 1.3),
        "provider_id": P.skewed_keys(rng, ctx.size("dim_provider"), n, 1.2),
        "date_key": ctx.calendar.keys[days],
        "medication_name": _MED_NAMES.take(pa.array(med)),
        "dosage": _MED_STRENGTHS.take(pa.array(strength)),
        "prescribed_date": ctx.calendar.dates[days],
        "quantity": supply * rng.choice(np.array([1, 1, 1, 2]), n),
        "days_supply": supply,
        "refills": rng.choice(np.array([0, 0, 1, 2, 3, 5, 11]), n),
        "cost": np.maximum(cost, 100),
    }


DIM_PATIENT = TableSpec(
    name="dim_patient",
    schema="dim",
    description="Patients: names with US frequencies, gender from the first name, realistic age mix, insurers.",
    columns=(
        Column("patient_id", INT, nullable=False, primary_key=True),
        Column("mrn", VARCHAR(12), nullable=False),
        Column("patient_name", VARCHAR(100)),
        Column("first_name", VARCHAR(50)),
        Column("last_name", VARCHAR(50)),
        Column("gender", VARCHAR(1)),
        Column("date_of_birth", DATE),
        Column("email", VARCHAR(100)),
        Column("phone", VARCHAR(20)),
        Column("address", VARCHAR(200)),
        Column("city", VARCHAR(50)),
        Column("state", VARCHAR(2)),
        Column("postal_code", VARCHAR(10)),
        Column("blood_type", VARCHAR(3)),
        Column("insurance_provider", VARCHAR(50)),
    ),
    size=lambda rows: _clamp(rows // 10, 100, 50_000_000),
    build=build_patient,
    business_key="mrn",
)

DIM_PROVIDER = TableSpec(
    name="dim_provider",
    schema="dim",
    description="Providers with 10-digit NPIs, specialties and facilities.",
    columns=(
        Column("provider_id", INT, nullable=False, primary_key=True),
        Column("npi", VARCHAR(10), nullable=False),
        Column("provider_name", VARCHAR(100)),
        Column("specialty", VARCHAR(50)),
        Column("facility_name", VARCHAR(100)),
        Column("city", VARCHAR(50)),
        Column("state", VARCHAR(2)),
    ),
    size=lambda rows: _clamp(rows // 500, 20, 1_000_000),
    build=build_provider,
    business_key="npi",
)

DIM_DIAGNOSIS = TableSpec(
    name="dim_diagnosis",
    schema="dim",
    description="ICD-10-CM diagnosis codes (E11.9, I10, J45.909 ...) with chapters and prevalence.",
    columns=(
        Column("diagnosis_id", INT, nullable=False, primary_key=True),
        Column("diagnosis_code", VARCHAR(16), nullable=False),
        Column("diagnosis_name", VARCHAR(200)),
        Column("category", VARCHAR(50)),
        Column("is_chronic", INT),
    ),
    size=lambda rows: len(DIAGNOSES),
    build=build_diagnosis,
    business_key="diagnosis_code",
)

FACT_VISITS = TableSpec(
    name="fact_visits",
    schema="fact",
    description="Encounters: weekday-heavy, winter peaks, clinic hours (ER round the clock), charges per visit type.",
    columns=(
        Column("visit_id", BIGINT, nullable=False, primary_key=True),
        Column("patient_id", INT, nullable=False, references="dim_patient.patient_id"),
        Column("provider_id", INT, nullable=False, references="dim_provider.provider_id"),
        Column("diagnosis_id", INT, nullable=False, references="dim_diagnosis.diagnosis_id"),
        Column("date_key", INT, nullable=False, references="dim_date.date_key"),
        Column("visit_date", TIMESTAMP),
        Column("visit_type", VARCHAR(20)),
        Column("visit_duration", INT),
        Column("charge_amount", DECIMAL(10, 2)),
        Column("paid_amount", DECIMAL(10, 2)),
    ),
    size=lambda rows: rows,
    build=build_visits,
    date_column="visit_date",
)

FACT_MEDICATIONS = TableSpec(
    name="fact_medications",
    schema="fact",
    description="Prescriptions: common generics with real strengths, 30/90-day supplies and costs.",
    columns=(
        Column("prescription_id", BIGINT, nullable=False, primary_key=True),
        Column("patient_id", INT, nullable=False, references="dim_patient.patient_id"),
        Column("provider_id", INT, nullable=False, references="dim_provider.provider_id"),
        Column("date_key", INT, nullable=False, references="dim_date.date_key"),
        Column("medication_name", VARCHAR(100)),
        Column("dosage", VARCHAR(50)),
        Column("prescribed_date", DATE),
        Column("quantity", INT),
        Column("days_supply", INT),
        Column("refills", INT),
        Column("cost", DECIMAL(10, 2)),
    ),
    size=lambda rows: rows,
    build=build_medications,
    date_column="prescribed_date",
)

HEALTHCARE = StarSchema(
    name="Healthcare",
    description="Care delivery: patients, providers, diagnoses; visits and prescriptions.",
    tables=(DIM_DATE, DIM_PATIENT, DIM_PROVIDER, DIM_DIAGNOSIS, FACT_VISITS, FACT_MEDICATIONS),
    date_profile="healthcare",
)
