"""Beat-by-beat ED/ES: beats in noisy curves, per-beat EF, fallbacks and reasons, and EF of real CAMUS masks."""

import numpy as np
import pytest
from echo_clips import beat_weights, beating_loop, camus_phases

from nnunet_lightweight.clinical.beats import (
    FLAG_FPS_UNKNOWN,
    FLAG_IRREGULAR,
    FLAG_NO_FULL_BEAT,
    detect_beats,
    min_cycle_frames,
)
from nnunet_lightweight.clinical.ejection_fraction import ejection_fraction
from nnunet_lightweight.clinical.volume_curves import cine_volume_curve
from nnunet_lightweight.clinical.volumes import simpson_single_plane_volume


def _curve(n_frames, period, offset, edv=120.0, esv=50.0):
    return edv - (edv - esv) * beat_weights(n_frames, period, offset)


def test_beats_of_a_noisy_curve_at_50_fps():
    """Three beats of 0.8 s at 50 fps with noise; the global max/min would mix frames of different beats."""
    curve = _curve(150, period=40, offset=25) + np.random.default_rng(0).normal(0, 2.0, 150)
    analysis = detect_beats(curve, fps=50)
    true_ed, true_es = [15, 55, 95, 135], [35, 75, 115]
    assert len(analysis.beats) == 3
    for beat, ed, es in zip(analysis.beats, true_ed, true_es):
        assert abs(beat.ed_frame - ed) <= 3 and abs(beat.es_frame - es) <= 3
    assert analysis.ef == pytest.approx(ejection_fraction(120, 50), abs=2.5)
    assert analysis.ef_median == pytest.approx(ejection_fraction(120, 50), abs=2.5)
    assert analysis.measurable and analysis.flags == []


def test_spikes_and_short_cycles_are_no_beats():
    """One-frame drops at ED (an LV partly missed) and a wobble shorter than 0.3 s make no extra beats."""
    curve = _curve(100, period=40, offset=0)  # ED at 0, 40, 80; ES at 20, 60
    curve[[38, 41]] -= 60
    analysis = detect_beats(curve, fps=50)
    assert len(analysis.beats) == 1
    assert abs(analysis.beats[0].ed_frame - 40) <= 1 and analysis.beats[0].es_frame == 60
    assert analysis.ef == pytest.approx(ejection_fraction(120, 50), abs=0.5)
    assert min_cycle_frames(50) == 15
    wobble = curve.copy()
    wobble[60:70] += 40 * np.sin(np.linspace(0, np.pi, 10))  # a 10-frame (0.2 s) bump inside systole-diastole
    assert len(detect_beats(wobble, fps=50).beats) == 1
    assert FLAG_FPS_UNKNOWN in detect_beats(curve).flags


def test_irregular_beats_are_flagged_and_reported_by_mean_and_median():
    curve = np.concatenate([_curve(40, 40, 20, esv=50), _curve(40, 40, 0, esv=80), _curve(40, 40, 0, esv=50)])
    analysis = detect_beats(curve, fps=50)
    # Beats: ED 20 -> ES 39 (EF 58 %), ED 40 -> ES 60 (33 %), ED 80 -> ES 100 (58 %).
    np.testing.assert_allclose(sorted(b.ef for b in analysis.beats), [33.3, 58.3, 58.3], atol=1.5)
    assert FLAG_IRREGULAR in analysis.flags
    assert analysis.ef == pytest.approx(np.mean([b.ef for b in analysis.beats]))
    assert analysis.ef_median == pytest.approx(np.median([b.ef for b in analysis.beats]))


def test_half_cycle_falls_back_to_max_and_min():
    """A CAMUS half-sequence runs from ED to ES: no full beat inside the clip."""
    analysis = detect_beats(np.linspace(120, 50, 20), fps=30)
    assert analysis.beats == [] and FLAG_NO_FULL_BEAT in analysis.flags
    assert (analysis.ed_frame, analysis.es_frame) == (0, 19) and analysis.measurable
    assert analysis.ef == pytest.approx(ejection_fraction(120, 50))


def test_not_measurable_clips_get_a_reason():
    flat = detect_beats(np.full(60, 80.0) + np.random.default_rng(1).normal(0, 0.5, 60), fps=50)
    assert not flat.measurable and "flat volume curve" in flat.reason and np.isnan(flat.ef)
    sparse = _curve(60, 30, 0)
    sparse[::2] = np.nan  # an LV in only half of the frames (and the rest of a few pixels: NaN volumes)
    sparse[1:20:2] = np.nan
    analysis = detect_beats(sparse, fps=50)
    assert not analysis.measurable and "no measurable LV in most frames" in analysis.reason
    assert detect_beats(np.full(10, np.nan), fps=50).reason.startswith("no measurable LV")


def test_ef_of_a_beating_camus_loop_matches_its_ed_and_es_masks(camus_root):
    """Two full beats morphing the real ED and ES masks of one patient: each beat's EF is the masks' EF."""
    phases = camus_phases(camus_root)
    _, masks = beating_loop(phases, beat_weights(60, period=20, offset=3))
    curve = cine_volume_curve(masks, (1.0, 1.0), "4CH", volume_unit="px^3")
    analysis = detect_beats(curve.volumes, fps=25)
    expected = ejection_fraction(
        simpson_single_plane_volume(phases["ED_gt"], (1.0, 1.0)),
        simpson_single_plane_volume(phases["ES_gt"], (1.0, 1.0)),
    )
    assert [(b.ed_frame, b.es_frame) for b in analysis.beats] == [(17, 27), (37, 47)]
    assert all(b.ef == pytest.approx(expected, abs=1e-6) for b in analysis.beats)
    assert analysis.ef == pytest.approx(expected, abs=1e-6) and analysis.flags == []
