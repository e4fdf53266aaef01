/* plot.c - --plot FILE.svg: one panel per mode, memory over time. Plain
 * SVG written here (no library): a browser shows it as it is. Each panel
 * is scaled to its own run (time: its wall time; bytes: its largest figure
 * or the budget), so a slow or huge run does not flatten the others; the
 * panel's title gives the figures to compare. */
#include "batch_budget.h"

#define W       960 /* picture width */
#define PANEL_H 230 /* one mode's panel */
#define LEFT    70  /* room for the byte labels */
#define RIGHT   20
#define TOP     58  /* title, then the legend */
#define PLOT_H  170 /* the plot inside a panel */

static const struct {
	const char *name, *colour, *dash;
} lines[] = {
	{"RSS (resident memory)", "#1f5fbf", ""},
	{"held by running tasks (allocated)", "#2e9e44", ""},
	{"claimed on the budget (semaphore in use)", "#e08a00", ""},
	{"budget", "#c0392b", "6,4"},
};

static int64_t
value(const struct sample *s, int line)
{
	return line == 0 ? s->rss : line == 1 ? s->in_use : s->claimed;
}

static void
polyline(FILE *f, const struct sample *smp, size_t n, int line, double y0,
	 double tmax, double ymax)
{
	fprintf(f,
		"<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
		"points=\"",
		lines[line].colour);
	for (size_t i = 0; i < n; i++) {
		int64_t v = value(&smp[i], line);
		if (v < 0)
			continue;
		fprintf(f, "%.1f,%.1f ",
			LEFT + (double)smp[i].t_ns / tmax * (W - LEFT - RIGHT),
			y0 + PLOT_H - (double)v / ymax * PLOT_H);
	}
	fprintf(f, "\"/>\n");
}

int
write_plot(const char *path, const struct config *c, const struct result *rs,
	   struct sample *const *smp, const size_t *ns, int n)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -errno;
	int h = TOP + n * PANEL_H;
	char b[32];
	fmt_bytes(b, sizeof b, c->budget);
	fprintf(f,
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
		"height=\"%d\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
		"<text x=\"%d\" y=\"20\" font-size=\"15\" "
		"font-weight=\"bold\">batch_budget: "
		"%ld tasks, budget %s",
		W, h, LEFT, rs[0].tasks, b);
	if (c->lie_p > 0)
		fprintf(f, ", --lie %g:%g (%ld liars)", c->lie_p, c->lie_f,
			rs[0].liars);
	fprintf(f, ", seed %llu</text>\n", (unsigned long long)c->seed);
	static const int legend_x[] = {0, 190, 430, 720};
	for (int l = 0; l < 4; l++) {
		int x = LEFT + legend_x[l];
		fprintf(f,
			"<line x1=\"%d\" y1=\"38\" x2=\"%d\" y2=\"38\" "
			"stroke=\"%s\" "
			"stroke-width=\"2\" stroke-dasharray=\"%s\"/>"
			"<text x=\"%d\" y=\"42\">%s</text>\n",
			x, x + 20, lines[l].colour, lines[l].dash, x + 25,
			lines[l].name);
	}

	for (int m = 0; m < n; m++) {
		double y0 = TOP + m * PANEL_H + 30;
		const struct result *r = &rs[m];
		double tmax = r->wall_ns > 0 ? (double)r->wall_ns : 1,
		       ymax = (double)c->budget;
		for (size_t i = 0; i < ns[m]; i++)
			for (int l = 0; l < 3; l++)
				ymax = (double)value(&smp[m][i], l) > ymax
					       ? (double)value(&smp[m][i], l)
					       : ymax;
		/* Byte gridlines every 64 MiB, or a power of two of them. */
		double step = 64.0 * MIB;
		while (ymax / step > 5)
			step *= 2;
		ymax = (double)((int64_t)(ymax / step) + 1) * step;
		char rss[32], over[64] = "", name[32];
		run_label(r, name, sizeof name);
		fmt_bytes(rss, sizeof rss, r->peak_rss);
		if (r->peak_rss > c->budget) {
			char d[32];
			fmt_bytes(d, sizeof d, r->peak_rss - c->budget);
			snprintf(over, sizeof over, ", %s over the budget", d);
		}
		fprintf(f,
			"<text x=\"%d\" y=\"%.0f\" font-weight=\"bold\">%s: "
			"%.2f s, "
			"%.0f tasks/s, peak RSS %s%s</text>\n",
			LEFT, y0 - 10, name, (double)r->wall_ns / 1e9,
			(double)r->tasks * 1e9 / (double)r->wall_ns, rss, over);
		fprintf(f,
			"<rect x=\"%d\" y=\"%.0f\" width=\"%d\" height=\"%d\" "
			"fill=\"none\" "
			"stroke=\"#888\"/>\n",
			LEFT, y0, W - LEFT - RIGHT, PLOT_H);
		for (double v = step; v < ymax; v += step) {
			double y = y0 + PLOT_H - v / ymax * PLOT_H;
			fmt_bytes(b, sizeof b, (int64_t)v);
			fprintf(f,
				"<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" "
				"y2=\"%.1f\" stroke=\"#ddd\"/>"
				"<text x=\"%d\" y=\"%.1f\" "
				"text-anchor=\"end\">%s</text>\n",
				LEFT, y, W - RIGHT, y, LEFT - 4, y + 4, b);
		}
		double sec = tmax / 1e9, tstep = sec > 20  ? 5
						 : sec > 8 ? 2
						 : sec > 4 ? 1
							   : 0.5;
		for (double t = 0; t <= sec; t += tstep)
			fprintf(f,
				"<text x=\"%.1f\" y=\"%.0f\" "
				"text-anchor=\"middle\" "
				"fill=\"#555\">%gs</text>\n",
				LEFT + t / sec * (W - LEFT - RIGHT),
				y0 + PLOT_H + 14, t);
		double yb = y0 + PLOT_H - (double)c->budget / ymax * PLOT_H;
		fprintf(f,
			"<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
			"stroke=\"%s\" "
			"stroke-width=\"1.5\" stroke-dasharray=\"%s\"/>\n",
			LEFT, yb, W - RIGHT, yb, lines[3].colour,
			lines[3].dash);
		for (int l = 0; l < 3; l++)
			polyline(f, smp[m], ns[m], l, y0, tmax, ymax);
	}
	fprintf(f, "</svg>\n");
	return fclose(f) == 0 ? 0 : -EIO;
}
