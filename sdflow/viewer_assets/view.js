// sdflow view: the pass selector and the value overlays, on top of DaCe's WebSDFV (window.WebSDFV etc. come
// from the inlined sdfv.js). Page data is the JSON in #sdflow-data (written by sdflow/viewer.py).
(function () {
    'use strict';
    const data = JSON.parse(document.getElementById('sdflow-data').textContent);
    const passSelect = document.getElementById('sdflow-pass');
    const overlaySelect = document.getElementById('sdflow-overlay');
    const legend = document.getElementById('sdflow-legend');

    function formatBytes(value) {
        const units = ['B', 'KiB', 'MiB', 'GiB'];
        let unit = 0;
        while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
        return (unit ? value.toFixed(2) : value.toFixed(0)) + ' ' + units[unit];
    }
    function formatMs(value) { return value >= 1 ? value.toFixed(2) + ' ms' : (value * 1000).toFixed(1) + ' µs'; }
    const FORMATS = { bytes: formatBytes, ms: formatMs };

    // Colours op nodes green (small) to red (the largest value of the graph); the square root keeps
    // mid-sized ops apart from the smallest. The tooltip gives the value.
    class ValueOverlay extends window.GenericSdfgOverlay {
        constructor(renderer, values, format) {
            super(renderer);
            this.olClass = ValueOverlay;
            this.values = values;
            this.format = format;
            this.max = Math.max(1e-30, ...Object.values(values));
        }
        refresh() { this.renderer.draw_async(); }
        draw() { this.shadeSDFG(); }
        shadeNode(node, ctx) {
            const value = this.values[node.parent_id + '/' + node.id];
            if (value === undefined) return;
            const severity = Math.sqrt(value / this.max);
            node.shade(this.renderer, ctx, 'hsl(' + Math.round(120 * (1 - severity)) + ',100%,45%)', 0.6);
            const mouse = this.renderer.get_mousepos();
            if (mouse && node.intersect(mouse.x, mouse.y)) {
                this.renderer.set_tooltip(() => {
                    const container = this.renderer.get_tooltip_container();
                    if (container) container.innerText = node.label() + ': ' + this.format(value);
                });
            }
        }
    }

    function total(values) { return Object.values(values).reduce((a, b) => a + b, 0); }

    function describe(index, mode) {
        const page = data.pages[index];
        const values = page[mode] || {};
        if (mode === 'none') return '';
        if (Object.keys(values).length === 0) {
            return mode === 'ms' ? 'no timings for this graph (sdflow view --profile REPORT)' : 'no op nodes';
        }
        let text = 'total ' + FORMATS[mode](total(values));
        if (mode === 'bytes' && index > 0) {
            const before = total(data.pages[index - 1].bytes);
            const delta = total(values) - before;
            text += ' (' + (delta <= 0 ? '−' : '+') + FORMATS.bytes(Math.abs(delta)) + ' vs previous)';
        }
        const dims = Object.entries(data.dims).map(([k, v]) => k + '=' + v).join(', ');
        if (mode === 'bytes') text += dims ? '; dims ' + dims : '; symbolic dims counted as 1';
        return 'low<span class="swatch"></span>high · ' + text;
    }

    function applyOverlay() {
        const renderer = window.WebSDFV.getInstance().get_renderer();
        if (!renderer) return;
        const index = Number(passSelect.value);
        const mode = overlaySelect.value;
        renderer.overlayManager.deregister_overlay(ValueOverlay);
        const values = data.pages[index][mode];
        if (mode !== 'none' && values && Object.keys(values).length) {
            renderer.overlayManager.register_overlay_instance(new ValueOverlay(renderer, values, FORMATS[mode]));
        }
        legend.innerHTML = describe(index, mode);
    }

    function show(index) {
        const sdfv = window.WebSDFV.getInstance();
        const sdfg = window.checkCompatLoad(window.parse_sdfg(JSON.stringify(data.pages[index].sdfg)));
        sdfv.setSDFG(sdfg, null, false);
        applyOverlay();
        document.body.dataset.sdflowPage = String(index);
    }

    data.pages.forEach((page, index) => passSelect.add(new Option(page.label, String(index))));
    passSelect.value = String(data.pages.length - 1);
    passSelect.addEventListener('change', () => show(Number(passSelect.value)));
    overlaySelect.addEventListener('change', applyOverlay);
    if (data.pages.some(page => Object.keys(page.ms).length)) overlaySelect.value = 'ms';

    // The graph takes the rest of the window below our bar and DaCe's header.
    function fitContents() {
        const contents = document.getElementById('contents');
        contents.style.height = Math.max(200, window.innerHeight - contents.getBoundingClientRect().top - 4) + 'px';
    }
    window.addEventListener('resize', fitContents);
    document.fonts.ready.then(() => {
        if (!document.fonts.check('24px "Material Symbols Outlined"')) {
            document.documentElement.classList.add('sdflow-no-icon-font');
        }
    });

    function start() { fitContents(); show(Number(passSelect.value)); }
    document.addEventListener('DOMContentLoaded', () => {
        const sdfv = window.WebSDFV.getInstance();
        if (sdfv.initialized || sdfv._initialized) start(); else sdfv.on('initialized', start);
    });
})();
