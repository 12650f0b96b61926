"""The figure layout check that every page runs before it shows a figure (plots.show)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rql_lite.teaching import plots  # noqa: E402


def two_panels():
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="a line with a long label")
        ax.set_title("panel")
    return fig, axes


def test_a_legend_inside_its_axes_passes_and_one_outside_fails():
    fig, axes = two_panels()
    axes[0].legend(loc="upper left")
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    assert plots.layout_problems(fig) == []
    axes[0].legend(loc="upper left", bbox_to_anchor=(0.8, 1.0))  # spills into the right panel
    assert plots.layout_problems(fig) == ["the legend of 'panel' lies outside its axes"]
    plt.close(fig)


def test_a_figure_legend_must_not_cover_an_axes():
    fig, axes = two_panels()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    assert plots.layout_problems(fig) == []
    fig.tight_layout()  # the axes grow over the legend
    assert any("overlaps" in p for p in plots.layout_problems(fig))
    plt.close(fig)


def test_backticks_in_titles_and_labels_are_reported(capsys):
    fig, axes = two_panels()
    fig.suptitle("Updates from `bench` records")
    axes[1].set_xlabel("runs, `R`")
    problems = plots.layout_problems(fig)
    assert len(problems) == 2 and all("backtick" in p for p in problems)
    plots.show(fig)
    err = capsys.readouterr().err
    assert err.count(plots.FIGURE_CHECK) == 2 and "Updates from" in err
    plt.close("all")
