"""Where each external dataset comes from, how to cite it, and what its terms allow.

None of these datasets ships with ocog: their terms forbid redistribution (ISPRS) or ask
users to accept them on the host (IEEE DataPort). A user downloads the archives and puts
them, unpacked or not, under `data/raw/<dataset>` ($OCOG_DATA_DIR/raw/<dataset>); the
preparers find the files there by name. docs/data.md says the same at more length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocog_lib.errors import InputError


@dataclass(frozen=True)
class ExternalDataset:
    name: str
    title: str
    url: str  # where to request or download it
    archives: tuple[str, ...]  # what to download
    expected: str  # the files the preparer looks for
    citation: str
    terms: str


ISPRS_URL = "https://www.isprs.org/education/benchmarks/UrbanSemLab/default.aspx"
ISPRS_CITATION = (
    "Rottensteiner, F., Sohn, G., Jung, J., Gerke, M., Baillard, C., Benitez, S., Breitkopf, "
    "U., 2012. The ISPRS benchmark on urban object classification and 3D building "
    "reconstruction. ISPRS Annals of the Photogrammetry, Remote Sensing and Spatial "
    "Information Sciences I-3, 293-298. doi:10.5194/isprsannals-I-3-293-2012"
)
ISPRS_TERMS = (
    "Research use only; the data must not be redistributed. Cite the ISPRS benchmark in "
    "publications."
)
DGPF_CITATION = (
    "Cramer, M., 2010. The DGPF test on digital aerial camera evaluation - overview and "
    "test design. Photogrammetrie - Fernerkundung - Geoinformation 2(2010), 73-82"
)

EXTERNAL_DATASETS: dict[str, ExternalDataset] = {
    "vaihingen": ExternalDataset(
        name="vaihingen",
        title="ISPRS 2D Semantic Labeling benchmark, Vaihingen",
        url=ISPRS_URL,
        archives=("ISPRS_semantic_labeling_Vaihingen.zip",
                  "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE.zip",
                  "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip "
                  "(optional)",
                  "Vaihingen_dsm_tiles_geoinfo.zip (optional: georeferencing)"),
        expected="top/top_mosaic_09cm_area<N>.tif (IRRG orthophotos) and the RGB-coded "
                 "ground truth top_mosaic_09cm_area<N>.tif (or *_noBoundary.tif) in another "
                 "folder",
        citation=f"{ISPRS_CITATION}; the Vaihingen data: {DGPF_CITATION} (DGPF)",
        terms=ISPRS_TERMS,
    ),
    "potsdam": ExternalDataset(
        name="potsdam",
        title="ISPRS 2D Semantic Labeling benchmark, Potsdam",
        url=ISPRS_URL,
        archives=("4_Ortho_RGBIR.zip (or 2_Ortho_RGB.zip / 3_Ortho_IRRG.zip)",
                  "5_Labels_all.zip (or 5_Labels_all_noBoundary.zip)"),
        expected="top_potsdam_<a>_<b>_RGBIR.tif (or _RGB / _IRRG) with the RGB-coded "
                 "top_potsdam_<a>_<b>_label.tif",
        citation=ISPRS_CITATION,
        terms=ISPRS_TERMS,
    ),
    "dfc22": ExternalDataset(
        name="dfc22",
        title="IEEE GRSS Data Fusion Contest 2022 (semi-supervised land cover, MiniFrance)",
        url="https://ieee-dataport.org/competitions/data-fusion-contest-2022-dfc2022",
        archives=("labeled_train.zip", "val.zip (optional, unlabeled)",
                  "unlabeled_train.zip (optional, unlabeled)"),
        expected="labeled_train/<region>/BDORTHO/<name>.tif with "
                 "labeled_train/<region>/UrbanAtlas/<name>_UA2012.tif",
        citation=(
            "Castillo-Navarro, J., Le Saux, B., Boulch, A., Audebert, N., Lefevre, S., 2022. "
            "Semi-supervised semantic segmentation in Earth observation: the MiniFrance "
            "suite, dataset analysis and multi-task network study. Machine Learning 111, "
            "3125-3160. doi:10.1007/s10994-020-05943-y; and the 2022 IEEE GRSS Data Fusion "
            "Contest (IEEE GRSS Image Analysis and Data Fusion Technical Committee, ONERA, "
            "ESA)."
        ),
        terms=(
            "Download from IEEE DataPort (free IEEE account) under the terms stated there. "
            "Images: IGN BD ORTHO; DEMs: IGN RGE ALTI; labels: Copernicus Urban Atlas 2012 "
            "(attribution: European Union, Copernicus Land Monitoring Service, EEA). Cite "
            "the MiniFrance paper and the contest; do not redistribute the archives."
        ),
    ),
}


def external_dataset(name: str) -> ExternalDataset:
    if name not in EXTERNAL_DATASETS:
        raise InputError(f"dataset {name!r}",
                         f"not an external dataset; valid: {', '.join(EXTERNAL_DATASETS)}")
    return EXTERNAL_DATASETS[name]


def how_to_obtain(name: str, raw_dir: Path) -> str:
    """One paragraph for an error message: what to download, from where, where to put it."""
    d = external_dataset(name)
    return (f"download the {d.title} from {d.url} ({', '.join(d.archives)}) and put the "
            f"archives, unpacked or not, in {raw_dir}; ocog looks for {d.expected}. "
            f"Terms: {d.terms}")
