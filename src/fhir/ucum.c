/* UCUM unit conversion for quantity search: the common clinical units, each mapped to one
 * canonical unit of its dimension (see docs/search.md "Quantities and units").
 *
 * Only conversions that are exact by definition are listed: a unit is converted within its own
 * dimension (mass, length, volume, time, temperature, pressure, mass concentration, substance
 * concentration, percentage). Substance concentration (mmol/L) and mass concentration (mg/dL)
 * are different dimensions: converting between them needs the analyte's molar mass, so Bevan
 * never does it. Temperatures are converted with their offsets (Cel, [degF] -> K). */
#include "bevan/fhir.h"

#include <string.h>

typedef struct {
    const char *code;        /* UCUM case-sensitive code */
    const char *canon;       /* canonical unit of its dimension */
    double factor;           /* canonical = value * factor + offset */
    double offset;
} ucum_unit;

static const ucum_unit units[] = {
    /* mass -> g */
    {"kg", "g", 1e3, 0}, {"g", "g", 1, 0}, {"mg", "g", 1e-3, 0}, {"ug", "g", 1e-6, 0}, {"ng", "g", 1e-9, 0},
    {"[lb_av]", "g", 453.59237, 0}, {"[oz_av]", "g", 28.349523125, 0},
    /* length -> m */
    {"km", "m", 1e3, 0}, {"m", "m", 1, 0}, {"cm", "m", 1e-2, 0}, {"mm", "m", 1e-3, 0}, {"[in_i]", "m", 0.0254, 0},
    {"[ft_i]", "m", 0.3048, 0},
    /* volume -> L */
    {"L", "L", 1, 0}, {"l", "L", 1, 0}, {"dL", "L", 1e-1, 0}, {"mL", "L", 1e-3, 0}, {"ml", "L", 1e-3, 0},
    {"uL", "L", 1e-6, 0},
    /* time -> s */
    {"s", "s", 1, 0}, {"min", "s", 60, 0}, {"h", "s", 3600, 0}, {"d", "s", 86400, 0}, {"wk", "s", 604800, 0},
    {"ms", "s", 1e-3, 0},
    /* temperature -> K */
    {"K", "K", 1, 0}, {"Cel", "K", 1, 273.15}, {"[degF]", "K", 5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0},
    /* pressure -> Pa */
    {"Pa", "Pa", 1, 0}, {"kPa", "Pa", 1e3, 0}, {"mm[Hg]", "Pa", 133.322387415, 0}, {"bar", "Pa", 1e5, 0},
    {"mbar", "Pa", 1e2, 0},
    /* mass concentration -> g/L */
    {"g/L", "g/L", 1, 0}, {"g/dL", "g/L", 10, 0}, {"mg/dL", "g/L", 1e-2, 0}, {"mg/L", "g/L", 1e-3, 0},
    {"ug/L", "g/L", 1e-6, 0}, {"ng/mL", "g/L", 1e-6, 0}, {"ug/mL", "g/L", 1e-3, 0}, {"mg/mL", "g/L", 1, 0},
    {"g/mL", "g/L", 1e3, 0},
    /* substance concentration -> mol/L */
    {"mol/L", "mol/L", 1, 0}, {"mmol/L", "mol/L", 1e-3, 0}, {"umol/L", "mol/L", 1e-6, 0},
    {"nmol/L", "mol/L", 1e-9, 0}, {"pmol/L", "mol/L", 1e-12, 0},
    /* percentage: only itself */
    {"%", "%", 1, 0},
};

bool bv_ucum_canonical(const char *code, double value, double *out, const char **canon)
{
    if (!code) return false;
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        if (strcmp(units[i].code, code) != 0) continue;
        if (out) *out = value * units[i].factor + units[i].offset;
        if (canon) *canon = units[i].canon;
        return true;
    }
    return false;
}
